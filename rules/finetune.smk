# Fine-tuning: one job per (target, training size, mode) cell trains and evaluates every
# seed (tlcgcnn.train.finetune). Seeds live in runs/s<seed>/ next to the cell's outputs, outside
# its declared outputs, so that Snakemake keeps them when a killed cell is started again:
# finished seeds are reused, an unfinished one resumes from its state.


rule finetune:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        pretrained=pretrained_input,
    output:
        metrics=f"{finetune_dir()}/metrics.json",
        predictions=f"{finetune_dir()}/predictions.parquet",
    log:
        f"{R}/logs/finetune/{{target}}/n{{size}}/{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{target}}/n{{size}}/{{mode}}.tsv"
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
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        descriptors=f"{R}/data/descriptors.parquet",
    output:
        metrics=f"{finetune_dir()}/metrics.json",
        predictions=f"{finetune_dir()}/predictions.parquet",
    log:
        f"{R}/logs/finetune/{{target}}/n{{size}}/{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{target}}/n{{size}}/{{mode}}.tsv"
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
