# Universal-potential backbones (a `pretrain` entry with `backbone:`, chgnet-0.3.0 or sevennet-0):
# the backbone embeds every crystal of the table once per run (tlcgcnn.features.backbones), its
# frozen-features modes read those vectors (rules/frozen.smk). The weights ship inside the
# package (envs/chgnet.yaml, envs/sevenn.yaml: one rule and env per package); nothing is
# downloaded. Vectors computed before are kept in L.backbone_cache (keyed by structure hash, backbone and package version), so a re-run after
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
    wildcard_constraints:
        backbone=CHGNET_BACKBONES,
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


# SevenNet (sevenn; its own env: the CHGNet rule's need not hold it)
rule embed_backbone_sevenn:
    input:
        table=L.table(),
    output:
        embeddings=L.backbone_embeddings("{backbone}"),
        info=L.backbone_info("{backbone}"),
    log:
        L.logs("backbones", "{backbone}.log"),
    benchmark:
        L.benchmarks("backbones", "{backbone}.tsv")
    wildcard_constraints:
        backbone=SEVENN_BACKBONES,
    conda:
        "../envs/sevenn.yaml"
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
        "../workflow/scripts/embed_backbone_sevenn.py"


# A backbone's read-out fine-tuned on a target (`features: readout`, tlcgcnn.train.readout): per
# cell, the backbone's atom features of the cell's crystals (cached for the run), then per seed
# its read-out MLP trained from the pretrained weights, validated and tested.
rule finetune_readout:
    input:
        table=L.table(),
        split=L.split("{target}"),
    output:
        metrics=L.cell_metrics(*CELL),
        predictions=L.cell_predictions(*CELL),
    log:
        L.cell_log(*CELL),
    benchmark:
        L.cell_benchmark(*CELL)
    wildcard_constraints:
        mode=READOUT_MODES,
    conda:
        "../envs/chgnet.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPUS_PER_TRAIN_JOB,
    params:
        cell=cell_params,
        split=SPLIT,
        device=DEVICE,
        atom_cache=readout_atom_cache,
    script:
        "../workflow/scripts/finetune_readout.py"
