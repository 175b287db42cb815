rule split_subsets:
    input:
        f"{R}/data/structures.parquet",
    output:
        f"{R}/splits/subsets.json",
    params:
        split=config["split"],
    log:
        f"{R}/logs/split/subsets.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/core.yaml"
    script:
        "../workflow/scripts/split.py"


rule split_target:
    input:
        table=f"{R}/data/structures.parquet",
        subsets=f"{R}/splits/subsets.json",
    output:
        f"{R}/splits/{{split_name}}.split.json",
    params:
        split=config["split"],
        spec=lambda wc: split_key(wc.split_name),
    log:
        f"{R}/logs/split/{{split_name}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/core.yaml"
    script:
        "../workflow/scripts/split.py"
