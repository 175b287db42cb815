# Transfer learning on crystal graphs: ingest -> split -> featurize -> train -> evaluate
# -> stats -> figures. See README.md. Run: snakemake --cores 2 [--configfile config/X.yaml]
from snakemake.utils import min_version

min_version("9.0")


# the default config only when none is given on the command line (a --configfile is then
# the whole config, not merged into this one: keys such as finetune.modes would merge)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/ingest.smk"
include: "rules/split.smk"
include: "rules/featurize.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/cells.smk"
include: "rules/stats.smk"
include: "rules/figures.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        all_targets(),
