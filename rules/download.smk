# Download stage: Materials Project / OQMD / matbench -> raw table + manifest (tlcgcnn.data.download).
# Partial downloads live in results/{name}/raw/{source}.work/ and are resumed by a re-run.
DL = f"{R}/raw"


rule download_materials_project:
    output:
        table=f"{DL}/materials_project.parquet",
        manifest=f"{DL}/materials_project.manifest.json",
    log:
        f"{R}/logs/download_materials_project.log",
    benchmark:
        f"{R}/benchmarks/download_materials_project.tsv"
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        source="materials_project",
        dataset=CFG.dataset_settings(),
        workdir=f"{DL}/materials_project.work",
    script:
        "../workflow/scripts/download.py"


rule download_oqmd:
    output:
        table=f"{DL}/oqmd.parquet",
        manifest=f"{DL}/oqmd.manifest.json",
    log:
        f"{R}/logs/download_oqmd.log",
    benchmark:
        f"{R}/benchmarks/download_oqmd.tsv"
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=1440,
    params:
        source="oqmd",
        dataset=CFG.dataset_settings(),
        workdir=f"{DL}/oqmd.work",
    script:
        "../workflow/scripts/download.py"


rule download_matbench:
    output:
        table=f"{DL}/matbench.parquet",
        manifest=f"{DL}/matbench.manifest.json",
    log:
        f"{R}/logs/download_matbench.log",
    benchmark:
        f"{R}/benchmarks/download_matbench.tsv"
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        source="matbench",
        dataset=CFG.dataset_settings(),
        workdir=f"{DL}/matbench.work",
    script:
        "../workflow/scripts/download.py"
