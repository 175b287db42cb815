rule featurize:
    input:
        table=f"{R}/data/structures.parquet",
    output:
        directory(GRAPHS),
    log:
        f"{R}/logs/featurize.log",
    benchmark:
        f"{R}/benchmarks/featurize.tsv"
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
