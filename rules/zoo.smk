# The model zoo: each `zoo.models` entry (a pretraining source, or the seeds of one
# fine-tuning cell) is published to <zoo.dir>/<name>/ with its checkpoints, model card and
# parity figure (tlcgcnn.report.cards). The structure table gives the card its calibrated 90 %
# intervals (fitted on the checkpoints' validation crystals, coverage measured on their test
# crystals). Configs without zoo.models request nothing from here.
ZOO_DIR = CFG.zoo.dir


wildcard_constraints:
    zoo_model="|".join(re.escape(n) for n in CFG.zoo_names) or "NONE",


rule model_card:
    input:
        unpack(zoo_inputs),
        structures=L.table(),
    output:
        directory(f"{ZOO_DIR}/{{zoo_model}}"),
    log:
        L.logs("zoo", "{zoo_model}.log"),
    conda:
        "../envs/cards.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        zoo=zoo_params,
    script:
        "../workflow/scripts/model_card.py"
