# The papers' grid: one job per (target, training size, mode) trains / fits every seed of
# that cell (finetune.group_seeds: true). CGCNN / attention / MT-transfer cells and the
# scikit-learn baselines on composition descriptors write the same records.


rule descriptors:
    input:
        f"{R}/data/structures.parquet",
    output:
        f"{R}/data/descriptors.parquet",
    log:
        f"{R}/logs/descriptors.log",
    benchmark:
        f"{R}/benchmarks/descriptors.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow/scripts/descriptors.py"


rule finetune_cell:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        pretrained=pretrained_input,
    output:
        metrics=f"{cell_dir()}/metrics.json",
        predictions=f"{cell_dir()}/predictions.parquet",
        runs=directory(f"{cell_dir()}/runs"),
    log:
        f"{R}/logs/cells/{{target}}/n{{size}}/{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/cells/{{target}}/n{{size}}/{{mode}}.tsv"
    wildcard_constraints:
        mode="|".join(GNN_MODES) or "NONE",
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        spec=lambda wc: target_spec(wc.target),
        size=lambda wc: wc.size,
        seeds=lambda wc: seeds_for(wc.size),
        mode_spec=lambda wc: MODES[wc.mode],
        pretrain_spec=lambda wc: PRETRAIN.get(MODES[wc.mode].get("pretrained")),
        split=config["split"],
        model=lambda wc: model_for(MODES[wc.mode].get("model")),
        train=train_config(FT.get("train")),
        device=config["train"]["device"],
    script:
        "../workflow/scripts/cell.py"


rule baseline_cell:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        descriptors=f"{R}/data/descriptors.parquet",
    output:
        metrics=f"{cell_dir()}/metrics.json",
        predictions=f"{cell_dir()}/predictions.parquet",
    log:
        f"{R}/logs/cells/{{target}}/n{{size}}/{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/cells/{{target}}/n{{size}}/{{mode}}.tsv"
    wildcard_constraints:
        mode="|".join(BASELINE_MODES) or "NONE",
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: target_spec(wc.target),
        size=lambda wc: wc.size,
        seeds=lambda wc: seeds_for(wc.size),
        mode_spec=lambda wc: MODES[wc.mode],
        split=config["split"],
    script:
        "../workflow/scripts/baseline_cell.py"
