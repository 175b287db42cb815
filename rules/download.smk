# Download stage: Materials Project, OQMD, matbench, a URL, MP-2018 sources -> raw table + manifest (data.download).
# Partial downloads live in results/{name}/raw/{source}.work/ and are resumed by a re-run.


rule download_materials_project:
    output:
        table=L.raw("materials_project"),
        manifest=L.raw_manifest("materials_project"),
    log:
        L.logs("download_materials_project.log"),
    benchmark:
        L.benchmarks("download_materials_project.tsv")
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        source="materials_project",
        dataset=CFG.dataset_settings(),
        workdir=str(L.raw_work("materials_project")),
    script:
        "../workflow/scripts/download.py"


rule download_oqmd:
    output:
        table=L.raw("oqmd"),
        manifest=L.raw_manifest("oqmd"),
    log:
        L.logs("download_oqmd.log"),
    benchmark:
        L.benchmarks("download_oqmd.tsv")
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=1440,
    params:
        source="oqmd",
        dataset=CFG.dataset_settings(),
        workdir=str(L.raw_work("oqmd")),
    script:
        "../workflow/scripts/download.py"


rule download_matbench:
    output:
        table=L.raw("matbench"),
        manifest=L.raw_manifest("matbench"),
    log:
        L.logs("download_matbench.log"),
    benchmark:
        L.benchmarks("download_matbench.tsv")
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        source="matbench",
        dataset=CFG.dataset_settings(),
        workdir=str(L.raw_work("matbench")),
    script:
        "../workflow/scripts/download.py"


rule download_url:
    # a prepared table from dataset.url, checked against dataset.sha256 (tlcgcnn.data.download.url);
    # params hold only what decides the file, so changing e.g. dataset.sample does not fetch it again
    output:
        table=L.raw("url"),
        manifest=L.raw_manifest("url"),
    log:
        L.logs("download_url.log"),
    benchmark:
        L.benchmarks("download_url.tsv")
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        source="url",
        dataset={
            k: v
            for k, v in CFG.dataset_settings().items()
            if k in ("source", "http", "url", "sha256", "format")
        },
        workdir=str(L.raw_work("url")),
    script:
        "../workflow/scripts/download.py"


rule download_mp2018:
    # the full MP-2018 table rebuilt from its public sources at pinned commits, every file and the
    # assembled table checked against pinned sha256 (tlcgcnn.data.download.mp2018); params hold
    # only what decides the table, so changing e.g. dataset.sample does not fetch it again
    output:
        table=L.raw("mp2018"),
        manifest=L.raw_manifest("mp2018"),
    log:
        L.logs("download_mp2018.log"),
    benchmark:
        L.benchmarks("download_mp2018.tsv")
    conda:
        "../envs/download.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        source="mp2018",
        dataset={
            k: v
            for k, v in CFG.dataset_settings().items()
            if k in ("source", "http", "mp2018")
        },
        workdir=str(L.raw_work("mp2018")),
    script:
        "../workflow/scripts/download.py"
