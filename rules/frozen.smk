# Frozen features: the pretrained source's crystal vectors (the input of its output layer)
# fed to a scikit-learn estimator, one job per (target, training size, mode) cell with
# every seed inside (tlcgcnn.train.frozen). Same outputs as the other fine-tuning rules, so the
# statistics test it against scratch with the other transfer modes. A `backbone:` source
# (CHGNet) gives its vectors through its embeddings of the table (rules/backbones.smk).


rule finetune_frozen:
    input:
        unpack(frozen_source_inputs),
        table=L.table(),
        split=L.split("{target}"),
    output:
        metrics=L.cell_metrics(*CELL),
        predictions=L.cell_predictions(*CELL),
    log:
        L.cell_log(*CELL),
    benchmark:
        L.cell_benchmark(*CELL)
    wildcard_constraints:
        mode=FROZEN_MODES,
    conda:
        "../envs/frozen.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=frozen_gpus,
    params:
        cell=cell_params,
        split=SPLIT,
        device=DEVICE,
    script:
        "../workflow/scripts/frozen.py"
