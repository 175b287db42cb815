# Outside labelled sets (config `external:`): ingested and featurized by the main data set's
# own scripts (same validation, same graph parameters), compared with the main table for
# materials that also occur there, and predicted by every fine-tuned graph model of the
# targets with the same property and transform (tlcgcnn.analysis.external).
EXT = f"{R}/external/{{external}}"


rule ingest_external:
    input:
        external_path,
    output:
        table=f"{EXT}/data/structures.parquet",
        dropped=f"{EXT}/data/dropped.csv",
        summary=f"{EXT}/data/ingest_summary.json",
    log:
        f"{R}/logs/external/{{external}}/ingest.log",
    benchmark:
        f"{R}/benchmarks/external/{{external}}/ingest.tsv"
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
        table=f"{EXT}/data/structures.parquet",
    output:
        directory(f"{EXT}/graphs/{CFG.graph_key()}"),
    log:
        f"{R}/logs/external/{{external}}/featurize.log",
    benchmark:
        f"{R}/benchmarks/external/{{external}}/featurize.tsv"
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
        external=f"{EXT}/data/structures.parquet",
        main=f"{R}/data/structures.parquet",
    output:
        f"{EXT}/overlap.parquet",
    log:
        f"{R}/logs/external/{{external}}/overlap.log",
    benchmark:
        f"{R}/benchmarks/external/{{external}}/overlap.tsv"
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
        table=f"{EXT}/data/structures.parquet",
        graphs=f"{EXT}/graphs/{CFG.graph_key()}",
        overlap=f"{EXT}/overlap.parquet",
        cells=external_cell_metrics,
    output:
        metrics=f"{EXT}/{{target}}/metrics.json",
        predictions=f"{EXT}/{{target}}/predictions.parquet",
    log:
        f"{R}/logs/external/{{external}}/{{target}}.log",
    benchmark:
        f"{R}/benchmarks/external/{{external}}/{{target}}.tsv"
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
            f"{R}/stats/external.csv",
            caption="../report/external.rst",
            category="Statistics",
        ),
        predictions=f"{R}/stats/external_predictions.parquet",
    log:
        f"{R}/logs/stats_external.log",
    benchmark:
        f"{R}/benchmarks/stats_external.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/external_stats.py"
