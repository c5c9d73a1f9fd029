#!/usr/bin/env bash
# Set up the peer for benchmarks/quality.py: CSBDeep (IsotropicCARE) with tensorflow-cpu, in its own
# virtual environment OUTSIDE the repository (it never touches isoapp's environment or torch).
#
#   bash benchmarks/peer_setup.sh            # -> ~/.cache/isoapp-bench/csbdeep-venv
#   ISOAPP_PEER_VENV=/path bash benchmarks/peer_setup.sh
#
# Versions are pinned: tensorflow-cpu 2.15 is the last release whose tf.keras is Keras 2, the API
# CSBDeep's IsotropicCARE was written for (csbdeep >= 0.8 also runs on Keras 3, but 2.15 is the
# combination its own CI tested longest). quality.py finds the venv at the same path.
set -euo pipefail
VENV="${ISOAPP_PEER_VENV:-$HOME/.cache/isoapp-bench/csbdeep-venv}"
PY="${PYTHON:-python3}"
TF_VERSION="${ISOAPP_PEER_TF:-2.15.1}"
CSBDEEP_VERSION="${ISOAPP_PEER_CSBDEEP:-0.8.1}"
mkdir -p "$(dirname "$VENV")"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "tensorflow-cpu==$TF_VERSION" "csbdeep==$CSBDEEP_VERSION" \
    "numpy<2" tifffile scipy
"$VENV/bin/python" - <<'PY'
import csbdeep, tensorflow as tf
from csbdeep.models import IsotropicCARE  # noqa: F401
print(f"peer ready: csbdeep {csbdeep.__version__}, tensorflow {tf.__version__}")
PY
echo "$VENV"
