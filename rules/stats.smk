rule stats:
    input:
        finetune_metrics(),
    output:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    params:
        baseline=FT["baseline"],
    log:
        f"{R}/logs/stats.log",
    benchmark:
        f"{R}/benchmarks/stats.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/stats.yaml"
    script:
        "../workflow/scripts/stats.py"
