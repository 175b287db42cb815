# The real-data subset committed under resources/ (tlcgcnn.data.embedded): a seeded, documented
# selection of a full Materials Project table. Its output is committed, so this rule joins
# the DAG only when asked for (see the Snakefile):
#   snakemake --cores 2 --config regenerate_embedded=True --forcerun embedded_subset -- resources/mp2018/mp2018_subset.parquet
# Its input (embedded.input: the full table, which is not in the repository) is asked for only
# when the rule is in the DAG, so a config without it still parses.
EMBEDDED = CFG.embedded


def embedded_input(wildcards):
    return CFG.embedded_input()


rule embedded_subset:
    input:
        embedded_input,
    output:
        table=f"{EMBEDDED.dir}/{EMBEDDED.file}",
        manifest=f"{EMBEDDED.dir}/manifest.json",
        readme=f"{EMBEDDED.dir}/README.md",
    log:
        "logs/embedded_subset.log",
    benchmark:
        "logs/embedded_subset.benchmark.tsv"
    conda:
        "../envs/embedded.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        settings=CFG.embedded_settings(),
        min_distance=CFG.dataset.min_distance,
    script:
        "../workflow/scripts/embedded.py"
