rule figure_learning_curve:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Learning curves",
        ),
        pdf=f"{R}/figures/learning_curve.pdf",
    log:
        f"{R}/logs/figures/learning_curve.log",
    benchmark:
        f"{R}/benchmarks/figures/learning_curve.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figures.py"


rule figure_ef_eg_density:
    input:
        table=f"{R}/data/structures.parquet",
        corr=f"{R}/stats/ef_eg_correlation.json",
    output:
        png=report(
            f"{R}/figures/ef_eg_density.png",
            caption="../report/ef_eg_density.rst",
            category="Data",
        ),
        pdf=f"{R}/figures/ef_eg_density.pdf",
    log:
        f"{R}/logs/figures/ef_eg_density.log",
    benchmark:
        f"{R}/benchmarks/figures/ef_eg_density.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="ef_eg_density",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_subset_scaling:
    input:
        pretrain=f"{R}/stats/pretrain.csv",
    output:
        png=report(
            f"{R}/figures/subset_scaling.png",
            caption="../report/subset_scaling.rst",
            category="Learning curves",
        ),
        pdf=f"{R}/figures/subset_scaling.pdf",
    log:
        f"{R}/logs/figures/subset_scaling.log",
    benchmark:
        f"{R}/benchmarks/figures/subset_scaling.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="subset_scaling",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_improvement:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/improvement.png",
            caption="../report/improvement.rst",
            category="Transfer learning",
        ),
        pdf=f"{R}/figures/improvement.pdf",
    log:
        f"{R}/logs/figures/improvement.log",
    benchmark:
        f"{R}/benchmarks/figures/improvement.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="improvement",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_freeze_heatmap:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/freeze_heatmap.png",
            caption="../report/freeze_heatmap.rst",
            category="Transfer learning",
        ),
        pdf=f"{R}/figures/freeze_heatmap.pdf",
    log:
        f"{R}/logs/figures/freeze_heatmap.log",
    benchmark:
        f"{R}/benchmarks/figures/freeze_heatmap.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="freeze_heatmap",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_multitask:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/multitask.png",
            caption="../report/multitask.rst",
            category="Transfer learning",
        ),
        pdf=f"{R}/figures/multitask.pdf",
    log:
        f"{R}/logs/figures/multitask.log",
    benchmark:
        f"{R}/benchmarks/figures/multitask.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="multitask",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_pretrain_size:
    input:
        metrics=f"{R}/stats/metrics.csv",
    output:
        png=report(
            f"{R}/figures/pretrain_size.png",
            caption="../report/pretrain_size.rst",
            category="Transfer learning",
        ),
        pdf=f"{R}/figures/pretrain_size.pdf",
    log:
        f"{R}/logs/figures/pretrain_size.log",
    benchmark:
        f"{R}/benchmarks/figures/pretrain_size.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="pretrain_size",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_models:
    input:
        models=f"{R}/stats/models.csv",
    output:
        png=report(
            f"{R}/figures/models.png",
            caption="../report/models.rst",
            category="Models",
        ),
        pdf=f"{R}/figures/models.pdf",
    log:
        f"{R}/logs/figures/models.log",
    benchmark:
        f"{R}/benchmarks/figures/models.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="models",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"


rule figure_target_curve:
    input:
        metrics=f"{R}/stats/metrics.csv",
        tests=f"{R}/stats/ttests.csv",
    output:
        png=report(
            f"{R}/figures/learning_curve_{{target}}.png",
            caption="../report/target_curve.rst",
            category="Learning curves",
            subcategory="{target}",
        ),
        pdf=f"{R}/figures/learning_curve_{{target}}.pdf",
    log:
        f"{R}/logs/figures/learning_curve_{{target}}.log",
    benchmark:
        f"{R}/benchmarks/figures/learning_curve_{{target}}.tsv"
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        figure="target_curve",
        labels=target_labels(),
    script:
        "../workflow/scripts/paper_figure.py"
