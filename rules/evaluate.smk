# Test-set metrics of a pretraining source (fine-tuning cells evaluate their own seeds).


rule evaluate_pretrain:
    input:
        model=L.pretrain_model("{pretrain}"),
        table=L.table(),
        graphs=GRAPHS,
    output:
        metrics=L.pretrain_metrics("{pretrain}"),
        predictions=L.pretrain_predictions("{pretrain}"),
    log:
        L.logs("evaluate", "pretrain", "{pretrain}.log"),
    benchmark:
        L.benchmarks("evaluate", "pretrain", "{pretrain}.tsv")
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
