rule ingest:
    input:
        ingest_input(),
    output:
        table=f"{R}/data/structures.parquet",
        dropped=f"{R}/data/dropped.csv",
        summary=f"{R}/data/ingest_summary.json",
    log:
        f"{R}/logs/ingest.log",
    benchmark:
        f"{R}/benchmarks/ingest.tsv"
    conda:
        "../envs/core.yaml"
    threads: data_threads()
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=CFG.dataset_settings(),
        required=CFG.required_properties(),
        data_sha256=local_data_sha256(),
    script:
        "../workflow/scripts/ingest.py"
