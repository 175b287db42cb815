rule split_subsets:
    input:
        L.table(),
        graphs=isolation_graphs(),
    output:
        L.subsets(),
    log:
        L.logs("split", "subsets.log"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # a table without the metal rule's column is fine when no target asks for a subset
        split=SPLIT if CFG.subsets_needed else {**SPLIT, "subsets_needed": False},
        isolated=CFG.featurize.isolated,
    script:
        "../workflow/scripts/split.py"


rule split_target:
    input:
        table=L.table(),
        subsets=L.subsets(),
        test_ids=test_ids_input(),
    output:
        L.split("{split_name}"),
    log:
        L.logs("split", "{split_name}.log"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        split=SPLIT,
        spec=split_spec,
    script:
        "../workflow/scripts/split.py"
