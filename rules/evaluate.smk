# Test-set metrics of a pretraining source (fine-tuning cells evaluate their own seeds).


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
        pretrain="{pretrain}",
        device=DEVICE,
    script:
        "../workflow/scripts/evaluate.py"
