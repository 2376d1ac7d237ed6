#!/usr/bin/env bash
# Set up HelixFlow on a fresh machine: system tools (bedtools, samtools, tabix) and the
# project virtual environment (.venv) with torch 2.13.0: the CUDA build where nvidia-smi
# sees a GPU, the CPU build elsewhere (set TORCH_INDEX_URL to choose another wheel index,
# e.g. https://download.pytorch.org/whl/cu128). Idempotent.
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
# Which torch: the CUDA build on a machine with a working GPU driver, else the CPU build.
build=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then build=cuda; fi
stamp=.venv/.helixflow-installed-$build
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (torch: $build build)" >&2
  .venv/bin/pip install -q --upgrade pip
  index=()
  [ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
  if [ "$build" = cuda ]; then
    # PyPI's Linux wheel brings the CUDA libraries (several GB); replace a CPU build
    .venv/bin/pip uninstall -q -y torch 2>/dev/null || true
    .venv/bin/pip install -q "${index[@]}" torch==2.13.0
    .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
      echo "setup: nvidia-smi sees a GPU but torch does not; install the torch build that" >&2
      echo "       matches the driver (TORCH_INDEX_URL=https://download.pytorch.org/whl/cuXYZ)" >&2
      exit 1; }
  else
    # the CPU wheel; an unpinned torch would pull several GB of CUDA libraries
    .venv/bin/pip install -q "${index[@]}" torch==2.13.0
  fi
  .venv/bin/pip install -q -e ".[workflow,dev]"
  rm -f .venv/.helixflow-installed .venv/.helixflow-installed-*
  touch "$stamp"
fi
