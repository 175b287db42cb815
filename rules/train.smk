rule pretrain:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{pretrain}}.split.json",
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        target_splits=expand(f"{R}/splits/{{t}}.split.json", t=sorted(TARGETS)),
    output:
        f"{R}/pretrain/{{pretrain}}/model.pt",
    log:
        f"{R}/logs/pretrain/{{pretrain}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain/{{pretrain}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        stage="pretrain",
        spec=lambda wc: PRETRAIN[wc.pretrain],
        size=lambda wc: PRETRAIN[wc.pretrain]["size"],
        seed=lambda wc: PRETRAIN[wc.pretrain]["seed"],
        split=config["split"],
        model=lambda wc: model_for(PRETRAIN[wc.pretrain].get("model")),
        train=lambda wc: train_config(PRETRAIN[wc.pretrain].get("train")),
        transfer=None,
    script:
        "../workflow/scripts/train.py"


rule finetune:
    input:
        table=f"{R}/data/structures.parquet",
        split=f"{R}/splits/{{target}}.split.json",
        graphs=GRAPHS,
        atom_features=ATOM_FEATURES,
        pretrained=pretrained_input,
    output:
        f"{finetune_dir()}/model.pt",
    log:
        f"{R}/logs/finetune/{{target}}/n{{size}}/{{mode}}/s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{target}}/n{{size}}/{{mode}}/s{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        stage="finetune",
        spec=lambda wc: TARGETS[wc.target],
        size=lambda wc: wc.size,
        seed=lambda wc: int(wc.seed),
        mode=lambda wc: wc.mode,
        split=config["split"],
        model=MODEL,
        train=train_config(FT.get("train")),
        transfer=lambda wc: MODES[wc.mode],
    script:
        "../workflow/scripts/train.py"
