# Universal-potential backbones (a `pretrain` entry with `backbone:`, e.g. chgnet-0.3.0): the
# backbone embeds every crystal of the table once per run (tlcgcnn.features.backbones), its
# frozen-features modes read those vectors (rules/frozen.smk). The weights ship inside the
# package (envs/chgnet.yaml); nothing is downloaded. Vectors computed before are kept in
# L.backbone_cache (keyed by structure hash, backbone and package version), so a re-run after
# the table changed embeds the new crystals only.


rule embed_backbone:
    input:
        table=L.table(),
    output:
        embeddings=L.backbone_embeddings("{backbone}"),
        info=L.backbone_info("{backbone}"),
    log:
        L.logs("backbones", "{backbone}.log"),
    benchmark:
        L.benchmarks("backbones", "{backbone}.tsv")
    conda:
        "../envs/chgnet.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        backbone=backbone_spec,
        cache=backbone_cache,
        device=DEVICE,
    script:
        "../workflow/scripts/embed_backbone.py"
