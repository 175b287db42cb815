# Frozen features: the pretrained source's crystal vectors (the input of its output layer)
# fed to a scikit-learn estimator, one job per (target, training size, mode) cell with
# every seed inside (tlcgcnn.train.frozen). Same outputs as the other fine-tuning rules, so the
# statistics test it against scratch with the other transfer modes.


rule finetune_frozen:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        graphs=GRAPHS,
        pretrained=source_checkpoint,
    output:
        metrics=f"{finetune_dir()}/metrics.json",
        predictions=f"{finetune_dir()}/predictions.parquet",
    log:
        f"{R}/logs/finetune/{{target}}/n{{size}}/{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{target}}/n{{size}}/{{mode}}.tsv"
    wildcard_constraints:
        mode=FROZEN_MODES,
    conda:
        "../envs/frozen.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        cell=cell_params,
        split=SPLIT,
        device=DEVICE,
    script:
        "../workflow/scripts/frozen.py"
