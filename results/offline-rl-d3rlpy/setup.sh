#!/usr/bin/env bash
# Builds the separate virtual environment for d3rlpy (it pins gymnasium==1.0.0, which our gymnasium-robotics
# refuses). torch is pinned to the local 2.13.0 CPU wheel so that pip never pulls a CUDA build.
set -euo pipefail
VENV=${D3RLPY_VENV:-/tmp/d3rlpy-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet "torch==2.13.0" "d3rlpy==2.8.1"
"$VENV/bin/python" - <<'PY'
import d3rlpy, torch
assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None, torch.__version__
print("d3rlpy", d3rlpy.__version__, "torch", torch.__version__, "cuda", torch.version.cuda)
PY
"$VENV/bin/pip" check
du -sh "$VENV"
