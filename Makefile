# Two commands: `make run` (main job on the default config) and `make test`.
# Both create or reuse the virtual environment .venv with pinned dependencies.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
CONFIG ?= config/config.yaml
# published results (config report.dir); NAME=<config name> shows one, else every folder
RESULTS_DIR ?= docs/results
NAME ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all venv dry-run lint clean-results results-readme results-papers results-backbones results-controls results-scratch-budget results-nm-source results-berkeley progress

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG)

dry-run: $(STAMP)
	$(VENV)/bin/snakemake -n --cores $(CORES) --configfile $(CONFIG)

# the fast suite (unit and small end-to-end tests); test-all adds the slow end-to-end runs
# (own data, README commands, paper-small, the 500-crystal pipeline, SLURM): what CI runs
test: $(STAMP)
	$(PY) -m pytest -q -rs -m "not e2e and not slurm"

test-all: $(STAMP)
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/ruff check src tests workflow benchmarks setup.py
	$(VENV)/bin/ruff format --check src tests workflow benchmarks setup.py

clean-results:
	rm -rf results/

# the claims table of docs/results.md from the published folders (tlcgcnn.report.readme)
results-readme: $(STAMP)
	$(PY) -m tlcgcnn.report readme $(if $(NAME),$(RESULTS_DIR)/$(NAME),$(patsubst %/claims.csv,%,$(wildcard $(RESULTS_DIR)/*/claims.csv))) docs/results.md

# the papers' claims in the papers' terms (config/claims/paper-cpu.yaml) on the published paper-cpu
# tables: docs/results/paper-cpu/claims_papers.csv and its table in docs/results.md (tlcgcnn.report.paper_claims);
# and how many scratch crystals each source is worth: tables/effective_data.csv (tlcgcnn.report.effective)
results-papers: $(STAMP)
	$(PY) -m tlcgcnn.report papers config/claims/paper-cpu.yaml $(RESULTS_DIR)/paper-cpu docs/results.md
	$(PY) -m tlcgcnn.report effective $(RESULTS_DIR)/paper-cpu docs/results.md

# CHGNet features and read-out vs the study's CGCNN cells, paired seed by seed (tlcgcnn.report.backbones):
# after `snakemake --cores 2 --configfile config/backbones-cpu.yaml`, writes docs/results/backbones-cpu/
# and the backbone table of docs/results.md
results-backbones: $(STAMP)
	$(PY) -m tlcgcnn.report backbones results/backbones-cpu/stats/metrics.csv $(RESULTS_DIR)/paper-cpu \
		$(RESULTS_DIR)/backbones-cpu --embed-info results/backbones-cpu/backbones/chgnet-0.3.0/embeddings.json \
		--page docs/results.md

# the study's transfer against its source's zero-shot, recalibrated and delta predictions
# (tlcgcnn.report.controls): after `snakemake --cores 2 --configfile config/controls-cpu.yaml`
results-controls: $(STAMP)
	$(PY) -m tlcgcnn.report controls results/controls-cpu/stats/metrics.csv $(RESULTS_DIR)/paper-cpu \
		$(RESULTS_DIR)/controls-cpu --page docs/results.md

# the study's transfer against scratch given its protocol-selection budget (tlcgcnn.report.scratch_budget):
# after `snakemake --cores 2 --configfile config/scratch-protocol-cpu.yaml`
results-scratch-budget: $(STAMP)
	$(PY) -m tlcgcnn.report scratch-budget results/scratch-protocol-cpu/stats/metrics.csv $(RESULTS_DIR)/paper-cpu \
		$(RESULTS_DIR)/scratch-protocol-cpu --page docs/results.md

# a non-metal-only ΔEf source against the all-materials one on the non-metal targets (TL-CGCNN's T6;
# tlcgcnn.report.nm_source): after `snakemake --cores 2 --set-threads pretrain=2 --configfile config/nm-source-cpu.yaml`
results-nm-source: $(STAMP)
	$(PY) -m tlcgcnn.report nm-source results/nm-source-cpu/stats/metrics.csv $(RESULTS_DIR)/paper-cpu \
		$(RESULTS_DIR)/nm-source-cpu --page docs/results.md

# the Berkeley report's layer freezing in its own setting (tlcgcnn.report.berkeley): after
# `snakemake --cores 2 --set-threads pretrain=2 --configfile config/berkeley-cpu.yaml` and
# `snakemake docs/results/berkeley-cpu/summary.md --cores 2 --configfile config/berkeley-cpu.yaml`
results-berkeley: $(STAMP)
	$(PY) -m tlcgcnn.report berkeley config/berkeley-cpu.yaml $(RESULTS_DIR)/berkeley-cpu --run results/berkeley-cpu \
		--page docs/results.md

# how far an unfinished run is: cells, job time left, interim claims (tlcgcnn.report.progress; reads only)
progress: $(STAMP)
	$(PY) -m tlcgcnn.report.progress --configfile $(CONFIG) --cores $(CORES)
