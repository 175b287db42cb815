# Composition / structure descriptors of every crystal: the baselines' features.


rule descriptors:
    input:
        L.table(),
    output:
        L.descriptors(),
    log:
        L.logs("descriptors.log"),
    benchmark:
        L.benchmarks("descriptors.tsv")
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow/scripts/descriptors.py"
