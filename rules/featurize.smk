rule featurize:
    input:
        table=f"{R}/data/structures.parquet",
    output:
        directory(GRAPHS),
    params:
        featurize=config["featurize"],
    log:
        f"{R}/logs/featurize.log",
    benchmark:
        f"{R}/benchmarks/featurize.tsv"
    threads: workflow.cores
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/core.yaml"
    script:
        "../workflow/scripts/featurize.py"
