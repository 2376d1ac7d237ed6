#!/usr/bin/env bash
# Set up HelixFlow on a fresh machine: system tools (bedtools, samtools, tabix) and the
# project virtual environment (.venv) with the CPU build of torch 2.13.0. Idempotent.
#   scripts/setup.sh          what the workflow needs
#   scripts/setup.sh --test   also Chromium, for the test that screenshots the report
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A package=([bedtools]=bedtools [samtools]=samtools [tabix]=tabix)
[ "${1:-}" = "--test" ] && package[chromium]=chromium
missing=()
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package[$tool]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (e.g. sudo apt-get install bedtools samtools tabix," >&2
    echo "       or conda install -c bioconda bedtools samtools htslib) and run again" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.helixflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/pip install -q --upgrade pip
  # the CPU wheel; an unpinned torch would pull several GB of CUDA libraries
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[workflow,dev]"
  touch "$stamp"
fi
