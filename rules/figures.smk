# One rule draws every figure of the registry in src/tlcgcnn/figures: the wildcard is the
# figure's file stem (learning_curve, models, learning_curve_<target>, ...). The registry
# names each figure's inputs, caption and category; the helpers in common.smk look them up.


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            L.figure("{figure}", "png"),
            caption="../report/figure.rst",
            category=figure_category,
            subcategory=figure_subcategory,
        ),
        pdf=L.figure("{figure}", "pdf"),
    log:
        L.logs("figures", "{figure}.log"),
    benchmark:
        L.benchmarks("figures", "{figure}.tsv")
    wildcard_constraints:
        figure=FIGURE_STEMS,
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        labels=target_labels(),
        caption=figure_caption,
    script:
        "../workflow/scripts/figures.py"
