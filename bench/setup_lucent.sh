#!/usr/bin/env bash
# Builds bench/.venv-lucent: Lucent (PyPI torch-lucent 0.1.8), the peer priorviz is measured
# against. It is not a priorviz dependency, so it lives in its own venv.
#
# torch and torchvision are the same releases priorviz runs on (pip takes them from the
# machine's wheel cache where there is one). Lucent's metadata asks for test and notebook
# tools (pytest, coveralls, scikit-learn, ...) that it does not import to render, and for
# kornia<=0.4.1, whose own pin on old torch releases would drag torch back: so Lucent and
# kornia 0.4.1 are installed without dependencies, then only what Lucent imports.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
VENV=.venv-lucent
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import lucent.optvis.render" 2>/dev/null; then
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install --quiet --no-deps torch-lucent==0.1.8 kornia==0.4.1
"$VENV/bin/python" -m pip install --quiet tqdm decorator ipython pillow numpy
"$VENV/bin/python" -c "import lucent.optvis.render, kornia; print('lucent venv ready: kornia', kornia.__version__)"
