# The published results (tlcgcnn.report.publish): <report.dir>/<name>/ (default docs/results/<name>/)
# with copies of the stats tables and requested figures, claims.csv, summary.md and
# provenance.json. Not part of `all` (it writes into the repository): ask for its files, e.g.
#   snakemake docs/results/quickstart/summary.md --cores 2 --configfile config/config.yaml
# Asking for docs/results/<name>/figures/<figure>.png redraws that figure where needed.


wildcard_constraints:
    published="|".join(
        re.escape(p.removeprefix(f"{PUB}/"))
        for files in published_files().values()
        for p in files
    )
    or "NONE",


rule report_copy:
    input:
        published_source,
    output:
        f"{PUB}/{{published}}",
    log:
        L.logs("report", "{published}.log"),
    benchmark:
        L.benchmarks("report", "{published}.tsv")
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow/scripts/report_copy.py"


rule report:
    input:
        tests=L.stats("ttests.csv"),
        metrics=L.stats("metrics.csv"),
        protocol=L.stats("protocol.csv"),
        multitask=multitask_files(),
        correlation=correlation_files(),
        ingest=L.ingest_summary(),
        pretrain=pretrain_metrics(),
        tables=published_files()["tables"],
        figures=published_files()["figures"],
    output:
        claims=f"{PUB}/claims.csv",
        summary=f"{PUB}/summary.md",
        provenance=f"{PUB}/provenance.json",
    log:
        L.logs("report", "report.log"),
    benchmark:
        L.benchmarks("report", "report.tsv")
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_params(),
    script:
        "../workflow/scripts/report.py"
