#!/usr/bin/env bash
# Set up questlab from nothing: a virtual environment in .venv with questlab and its test tools.
# torch is pinned to the CPU build first, so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[all,dev]"
echo "questlab installed in .venv ($(.venv/bin/questlab --help >/dev/null && echo ok))"
