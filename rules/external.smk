# Outside labelled sets (config `external:`): ingested and featurized by the main data set's
# own scripts (same validation, same graph parameters), compared with the main table for
# materials that also occur there, and predicted by every fine-tuned graph model of the
# targets with the same property and transform (tlcgcnn.analysis.external).
# the outside set named by the wildcard, laid out like a run (its own data/ and graphs/)
EXT = L.external("{external}")


rule ingest_external:
    input:
        external_path,
    output:
        table=EXT.table(),
        dropped=EXT.dropped(),
        summary=EXT.ingest_summary(),
    log:
        L.logs("external", "{external}", "ingest.log"),
    benchmark:
        L.benchmarks("external", "{external}", "ingest.tsv")
    conda:
        "../envs/core.yaml"
    threads: data_threads()
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=external_dataset,
        required=external_required,
    script:
        "../workflow/scripts/ingest.py"


rule featurize_external:
    input:
        table=EXT.table(),
    output:
        directory(EXT.graphs(CFG.graph_key())),
    log:
        L.logs("external", "{external}", "featurize.log"),
    benchmark:
        L.benchmarks("external", "{external}", "featurize.tsv")
    conda:
        "../envs/core.yaml"
    threads: data_threads()
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        featurize=FEATURIZE,
    script:
        "../workflow/scripts/featurize.py"


rule external_overlap:
    input:
        external=EXT.table(),
        main=L.table(),
    output:
        L.external_overlap("{external}"),
    log:
        L.logs("external", "{external}", "overlap.log"),
    benchmark:
        L.benchmarks("external", "{external}", "overlap.tsv")
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow/scripts/external_overlap.py"


rule evaluate_external:
    input:
        table=EXT.table(),
        graphs=EXT.graphs(CFG.graph_key()),
        overlap=L.external_overlap("{external}"),
        cells=external_cell_metrics,
    output:
        metrics=L.external_eval("{external}", "{target}") / "metrics.json",
        predictions=L.external_eval("{external}", "{target}") / "predictions.parquet",
    log:
        L.logs("external", "{external}", "{target}.log"),
    benchmark:
        L.benchmarks("external", "{external}", "{target}.tsv")
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        external="{external}",
        device=DEVICE,
        split=SPLIT,
    script:
        "../workflow/scripts/external_evaluate.py"


rule stats_external:
    input:
        metrics=external_files("metrics.json"),
        predictions=external_files("predictions.parquet"),
    output:
        table=report(
            L.stats("external.csv"),
            caption="../report/external.rst",
            category="Statistics",
        ),
        predictions=L.stats("external_predictions.parquet"),
    log:
        L.logs("stats_external.log"),
    benchmark:
        L.benchmarks("stats_external.tsv")
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/external_stats.py"
