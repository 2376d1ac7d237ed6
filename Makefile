# HelixFlow quick start:  make run   (the embedded default, end to end, with the report)
#                         make test  (the test suite)
# Both set themselves up first (scripts/setup.sh: bedtools, .venv, torch 2.13.0: CPU build,
# or the CUDA build where nvidia-smi sees a GPU).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
CORES ?= all

.PHONY: run test setup report figures lint clean bench-scale
FIGURE_RULES := plot_roc_pr plot_logos plot_sweep plot_metrics
# drawn from result tables too, when their stage is on in the config
OPTIONAL_FIGURE_RULES := motif_compare|transfer_summary

setup:
	@bash scripts/setup.sh

# make run CONFIG=my.yaml: that config over the default (its YAML checked first: Snakemake
# reports a syntax error in a --configfile without the line)
CONFIG_ARGS := $(if $(CONFIG),--configfile $(CONFIG))
run: setup
	$(if $(CONFIG),helixflow check-yaml $(CONFIG))
	snakemake --profile profiles/local --cores $(CORES) $(CONFIG_ARGS)
	snakemake --profile profiles/local --report results/report.html $(CONFIG_ARGS)
	@echo "report: results/report.html   summary: results/summary.html"

test:
	@bash scripts/setup.sh --test
	pytest -q

report: setup
	snakemake --profile profiles/local --report results/report.html

# redraw every figure from existing results (no retraining), then the report
figures: setup
	snakemake --profile profiles/local figures --forcerun $(FIGURE_RULES) \
	  $$(snakemake --list-rules 2>/dev/null | grep -xE '$(OPTIONAL_FIGURE_RULES)')
	snakemake --profile profiles/local --report results/report.html

# the whole workflow on the synthetic hg38 at 1/64, 1/8 and full size (hours; not in CI)
bench-scale: setup
	python benchmarks/bench_scale.py --scales $(or $(SCALES),1/64 1/8 1)

lint: setup
	ruff check src tests benchmarks
	snakemake --lint

clean:
	rm -rf results .snakemake
