# Pretraining: one source model per `pretrain` entry (tlcgcnn.train.pretrain). Its pool leaves out
# the test set of every fine-tuning target with a transfer mode (target_splits()).


rule pretrain:
    input:
        table=L.table(),
        split=L.split("{pretrain}"),
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        target_splits=target_splits(),
    output:
        L.pretrain_model("{pretrain}"),
    log:
        L.logs("pretrain", "{pretrain}.log"),
    benchmark:
        L.benchmarks("pretrain", "{pretrain}.tsv")
    conda:
        "../envs/torch.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        source=pretrain_params,
        split=SPLIT,
    script:
        "../workflow/scripts/pretrain.py"
