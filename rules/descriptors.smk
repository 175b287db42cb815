# Composition / structure descriptors of every crystal: the baselines' features.


rule descriptors:
    input:
        f"{R}/data/structures.parquet",
    output:
        f"{R}/data/descriptors.parquet",
    log:
        f"{R}/logs/descriptors.log",
    benchmark:
        f"{R}/benchmarks/descriptors.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow/scripts/descriptors.py"
