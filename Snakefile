# Transfer learning on crystal graphs: ingest -> split -> featurize -> train -> evaluate
# -> stats -> figures. See README.md. Run: snakemake --cores 2 [--configfile config/X.yaml]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/ingest.smk"
include: "rules/split.smk"
include: "rules/featurize.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/stats.smk"
include: "rules/figures.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        all_targets(),
