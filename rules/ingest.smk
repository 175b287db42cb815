rule ingest:
    input:
        ingest_input(),
    output:
        table=L.table(),
        dropped=L.dropped(),
        summary=L.ingest_summary(),
    log:
        L.logs("ingest.log"),
    benchmark:
        L.benchmarks("ingest.tsv")
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
