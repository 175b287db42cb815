rule figure_learning_curve:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Learning curves",
        ),
        pdf=f"{R}/figures/learning_curve.pdf",
    log:
        f"{R}/logs/figures/learning_curve.log",
    benchmark:
        f"{R}/benchmarks/figures/learning_curve.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figures.py"
