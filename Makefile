# HelixFlow quick start:  make run   (the embedded default, end to end, with the report)
#                         make test  (the test suite)
# Both set themselves up first (scripts/setup.sh: bedtools, .venv, torch 2.13.0 CPU).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
CORES ?= all

.PHONY: run test setup report figures lint clean

setup:
	@bash scripts/setup.sh

run: setup
	snakemake --profile profiles/local --cores $(CORES)
	snakemake --profile profiles/local --report results/report.html
	@echo "report: results/report.html   summary: results/summary.html"

test: setup
	pytest -q

report: setup
	snakemake --profile profiles/local --report results/report.html

lint: setup
	ruff check src tests benchmarks
	snakemake --lint

clean:
	rm -rf results .snakemake
