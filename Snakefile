# Transfer learning on crystal graphs: ingest -> split -> featurize -> train -> evaluate
# -> stats -> figures. See README.md. Run: snakemake --cores 2 [--configfile config/X.yaml]
from snakemake.utils import min_version

min_version("9.0")


# the default config only when none is given on the command line (a --configfile is then
# the whole config, not merged into this one: keys such as finetune.modes would merge)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"


# The real-data subset in resources/mp2018/ is committed; its rule joins the DAG only when
# asked for: snakemake --config regenerate_embedded=True --forcerun embedded_subset ...
if CFG.regenerate_embedded:

    include: "rules/embedded.smk"


include: "rules/download.smk"
include: "rules/ingest.smk"
include: "rules/split.smk"
include: "rules/featurize.smk"
include: "rules/descriptors.smk"
include: "rules/pretrain.smk"
include: "rules/evaluate.smk"
include: "rules/finetune.smk"
include: "rules/backbones.smk"
include: "rules/frozen.smk"
include: "rules/stats.smk"
include: "rules/external.smk"
include: "rules/figures.smk"
include: "rules/zoo.smk"
include: "rules/report.smk"


# cheap bookkeeping jobs run in the main Snakemake process, never on a cluster
localrules:
    all,
    split_subsets,
    split_target,


rule all:
    default_target: True
    input:
        all_targets(),
