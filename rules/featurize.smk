rule featurize:
    input:
        table=L.table(),
    output:
        directory(GRAPHS),
    log:
        L.logs("featurize.log"),
    benchmark:
        L.benchmarks("featurize.tsv")
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
