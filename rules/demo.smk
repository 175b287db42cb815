"""Offline demo dataset (CHGNet-labelled prototype crystals).

``resources/demo/demo.parquet`` is committed, so this rule is only part of the DAG when
``regenerate_demo`` is true (see the Snakefile). Regenerate it (about 15 minutes of CPU on two
cores) with

    snakemake --cores 2 --config regenerate_demo=True --forcerun demo_dataset -- resources/demo/demo.parquet

Parameters come from ``config["demo"]`` (all optional): n_crystals, n_bulk, seed, batch_size.
"""

DEMO = config.get("demo", {})


rule demo_dataset:
    output:
        table="resources/demo/demo.parquet",
        manifest="resources/demo/demo.manifest.json",
        dropped="resources/demo/dropped.csv",
    log:
        "logs/demo_dataset.log",
    benchmark:
        "logs/demo_dataset.benchmark.tsv"
    conda:
        "../envs/demo.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        n_crystals=DEMO.get("n_crystals", 3000),
        n_bulk=DEMO.get("n_bulk", 320),
        seed=DEMO.get("seed", 20240601),
        batch_size=DEMO.get("batch_size", 32),
    script:
        "../workflow/scripts/demo.py"
