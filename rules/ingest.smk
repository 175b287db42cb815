rule ingest:
    input:
        ingest_input(),
    output:
        table=f"{R}/data/structures.parquet",
        dropped=f"{R}/data/dropped.csv",
        summary=f"{R}/data/ingest_summary.json",
    params:
        dataset=config["dataset"],
        required=required_properties(),
    log:
        f"{R}/logs/ingest.log",
    benchmark:
        f"{R}/benchmarks/ingest.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/core.yaml"
    script:
        "../workflow/scripts/ingest.py"
