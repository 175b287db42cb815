rule stats:
    input:
        finetune_metrics(),
    output:
        metrics=L.stats("metrics.csv"),
        tests=report(
            L.stats("ttests.csv"),
            caption="../report/ttests.rst",
            category="Statistics",
        ),
        protocol=report(
            L.stats("protocol.csv"),
            caption="../report/protocol.rst",
            category="Statistics",
        ),
    log:
        L.logs("stats.log"),
    benchmark:
        L.benchmarks("stats.tsv")
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
        metrics=L.stats("metrics.csv"),
        tests=L.stats("ttests.csv"),
    output:
        best=report(
            L.stats("best_transfer.csv"),
            caption="../report/best_transfer.rst",
            category="Statistics",
        ),
        improvement=report(
            L.stats("improvement.csv"),
            caption="../report/improvement_table.rst",
            category="Statistics",
        ),
        spearman=report(
            L.stats("spearman.csv"),
            caption="../report/spearman.rst",
            category="Statistics",
        ),
        classification=report(
            L.stats("classification.csv"),
            caption="../report/classification.rst",
            category="Statistics",
        ),
        models=report(
            L.stats("models.csv"),
            caption="../report/models_table.rst",
            category="Statistics",
        ),
    log:
        L.logs("stats_summary.log"),
    benchmark:
        L.benchmarks("stats_summary.tsv")
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
        L.table(),
    output:
        report(
            L.stats("ef_eg_correlation.json"),
            caption="../report/correlation.rst",
            category="Statistics",
        ),
    log:
        L.logs("correlation.log"),
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
        pretrain_metrics(),
    output:
        report(
            L.stats("pretrain.csv"),
            caption="../report/pretrain_table.rst",
            category="Statistics",
        ),
    log:
        L.logs("pretrain_table.log"),
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
            L.stats("multitask.csv"),
            caption="../report/multitask_table.rst",
            category="Statistics",
        ),
    log:
        L.logs("multitask_table.log"),
    benchmark:
        L.benchmarks("multitask_table.tsv")
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


# MT-CGCNN's Figure M4: the seed-averaged ROC curve of every cell of every classification
# target (tlcgcnn.analysis.roc; none: not in the DAG of `all`)
rule roc:
    input:
        roc_predictions(),
    output:
        report(
            L.stats("roc.csv"),
            caption="../report/roc_table.rst",
            category="Statistics",
        ),
    log:
        L.logs("roc.log"),
    benchmark:
        L.benchmarks("roc.tsv")
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cells=roc_cells(),
    script:
        "../workflow/scripts/roc.py"
