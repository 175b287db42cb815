rule stats:
    input:
        finetune_metrics(),
    output:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    log:
        f"{R}/logs/stats.log",
    benchmark:
        f"{R}/benchmarks/stats.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        baseline=FT["baseline"],
    script:
        "../workflow/scripts/stats.py"
