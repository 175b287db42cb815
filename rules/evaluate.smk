rule evaluate_pretrain:
    input:
        model=f"{R}/pretrain/{{pretrain}}/model.pt",
        table=f"{R}/data/structures.parquet",
        graphs=GRAPHS,
    output:
        metrics=f"{R}/pretrain/{{pretrain}}/metrics.json",
        predictions=f"{R}/pretrain/{{pretrain}}/predictions.parquet",
    log:
        f"{R}/logs/evaluate/pretrain/{{pretrain}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/pretrain/{{pretrain}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        extra=lambda wc: {
            "stage": "pretrain",
            "mode": "pretrain",
            "size": PRETRAIN[wc.pretrain]["size"],
            "pretrain": wc.pretrain,
        },
        device=config["train"]["device"],
    script:
        "../workflow/scripts/evaluate.py"


rule evaluate:
    input:
        model=f"{finetune_dir()}/model.pt",
        table=f"{R}/data/structures.parquet",
        graphs=GRAPHS,
    output:
        metrics=f"{finetune_dir()}/metrics.json",
        predictions=f"{finetune_dir()}/predictions.parquet",
    log:
        f"{R}/logs/evaluate/{{target}}/n{{size}}/{{mode}}/s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{target}}/n{{size}}/{{mode}}/s{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        extra=lambda wc: {
            "stage": "finetune",
            "mode": wc.mode,
            "size": int(wc.size) if wc.size != "all" else "all",
            "pretrained": MODES[wc.mode].get("pretrained"),
        },
        device=config["train"]["device"],
    script:
        "../workflow/scripts/evaluate.py"
