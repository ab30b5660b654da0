#!/usr/bin/env bash
# The paper-size benchmark on CUDA (the paper's D = 160 slices, Merlin on the whole CT), then the
# full-resolution explain benchmark on the same GPU machine if ../shared/data is there.
# Usage: bench/gpu.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONPATH="$PWD" "$PY" bench/bench_paper_size.py --device cuda --batch 4 --merlin-slices 160 --volume-slices 160
