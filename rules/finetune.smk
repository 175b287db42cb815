# Fine-tuning: one job per (target, training size, mode) cell trains and evaluates every
# seed (tlcgcnn.train.finetune). Seeds live in runs/s<seed>/ next to the cell's outputs, outside
# its declared outputs, so that Snakemake keeps them when a killed cell is started again:
# finished seeds are reused, an unfinished one resumes from its state.


rule finetune:
    input:
        table=L.table(),
        split=L.split("{target}"),
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        pretrained=pretrained_input,
    output:
        metrics=L.cell_metrics(*CELL),
        predictions=L.cell_predictions(*CELL),
    log:
        L.cell_log(*CELL),
    benchmark:
        L.cell_benchmark(*CELL)
    wildcard_constraints:
        mode=GNN_MODES,
    conda:
        "../envs/torch.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        cell=cell_params,
        split=SPLIT,
    script:
        "../workflow/scripts/finetune.py"


rule finetune_baseline:
    input:
        table=L.table(),
        split=L.split("{target}"),
        descriptors=L.descriptors(),
    output:
        metrics=L.cell_metrics(*CELL),
        predictions=L.cell_predictions(*CELL),
    log:
        L.cell_log(*CELL),
    benchmark:
        L.cell_benchmark(*CELL)
    wildcard_constraints:
        mode=BASELINE_MODES,
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cell=cell_params,
        split=SPLIT,
    script:
        "../workflow/scripts/finetune_baseline.py"
