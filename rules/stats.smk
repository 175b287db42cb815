rule stats:
    input:
        finetune_metrics(),
    output:
        metrics=f"{R}/stats/metrics.csv",
        tests=report(
            f"{R}/stats/ttests.csv",
            caption="../report/ttests.rst",
            category="Statistics",
        ),
        protocol=report(
            f"{R}/stats/protocol.csv",
            caption="../report/protocol.rst",
            category="Statistics",
        ),
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
        baseline=CFG.baseline,
        mode_order=list(CFG.modes),
    script:
        "../workflow/scripts/stats.py"


rule stats_summary:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        best=report(
            f"{R}/stats/best_transfer.csv",
            caption="../report/best_transfer.rst",
            category="Statistics",
        ),
        improvement=report(
            f"{R}/stats/improvement.csv",
            caption="../report/improvement_table.rst",
            category="Statistics",
        ),
        spearman=report(
            f"{R}/stats/spearman.csv",
            caption="../report/spearman.rst",
            category="Statistics",
        ),
        classification=report(
            f"{R}/stats/classification.csv",
            caption="../report/classification.rst",
            category="Statistics",
        ),
        models=report(
            f"{R}/stats/models.csv",
            caption="../report/models_table.rst",
            category="Statistics",
        ),
    log:
        f"{R}/logs/stats_summary.log",
    benchmark:
        f"{R}/benchmarks/stats_summary.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/stats_summary.py"


rule correlation:
    input:
        f"{R}/data/structures.parquet",
    output:
        report(
            f"{R}/stats/ef_eg_correlation.json",
            caption="../report/correlation.rst",
            category="Statistics",
        ),
    log:
        f"{R}/logs/correlation.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/correlation.py"


rule pretrain_table:
    input:
        expand(f"{R}/pretrain/{{p}}/metrics.json", p=sorted(PRETRAIN)),
    output:
        report(
            f"{R}/stats/pretrain.csv",
            caption="../report/pretrain_table.rst",
            category="Statistics",
        ),
    log:
        f"{R}/logs/pretrain_table.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/pretrain_table.py"


# MT-CGCNN: each multi-task source against the single-task sources of its properties on the
# same split (tlcgcnn.analysis.multitask; pairs from the config, none: not in the DAG of `all`)
rule multitask_table:
    input:
        multitask_predictions(),
    output:
        report(
            f"{R}/stats/multitask.csv",
            caption="../report/multitask_table.rst",
            category="Statistics",
        ),
    log:
        f"{R}/logs/multitask_table.log",
    benchmark:
        f"{R}/benchmarks/multitask_table.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        pairs=multitask_pairs(),
        sources=multitask_sources(),
    script:
        "../workflow/scripts/multitask_table.py"
