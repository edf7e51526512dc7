#!/usr/bin/env bash
# One command (or `make bench`): priorviz against Lucent on EfficientNet-Lite0, then the gRPC overhead.
#   bench/run.sh                      # everything, full size (about 30-40 minutes on 2 busy cores)
#   bench/run.sh --steps 64 --repeats 1   # a quick look
#   bench/run.sh --cases single --threads 2
# Arguments go to bench/compare.py (see --help); results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make setup
[ -d service/_proto ] || make protos
bash bench/setup_lucent.sh
export PYTHONPATH="$PWD"
.venv/bin/python bench/compare.py "$@"
