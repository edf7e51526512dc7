#!/usr/bin/env bash
# The README's main job, in one command on a fresh machine:
#   install (make setup), start priorviz-server on the embedded defaults, wait until its
#   health is SERVING, run `priorviz compare` for a few classes and channels, write the
#   report (PNGs, contact sheet, metrics JSON, self-contained HTML), stop the server.
#
# Settings (environment): OUT (default out/report), PORT (50151), STEPS (128) and SIZE (160)
# per image, OBJECTIVES (two ImageNet classes and two channels), THREADS (torch threads of
# the server, 1), SETUP=0 to skip the install on a machine that has it. The defaults take a
# few minutes on two CPU cores after the install (each objective under Fourier, the face
# GAN and the distilled ImageNet prior, 128 steps each); STEPS=512 SIZE=224 gives sharper
# Fourier images in about 4x the time.
# One torch thread is the default because a second one slowed steps more than tenfold on a
# shared, busy machine; on an idle machine THREADS=2 is somewhat faster.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/report}
PORT=${PORT:-50151}
STEPS=${STEPS:-128}
SIZE=${SIZE:-160}
# logit:1 goldfish, logit:130 flamingo; two channels of middle blocks of EfficientNet-Lite0.
OBJECTIVES=${OBJECTIVES:-"logit:1 logit:130 blocks.10:17 blocks.13:5"}
THREADS=${THREADS:-1}

if [ "${SETUP:-1}" != 0 ]; then
  make setup
fi

mkdir -p "$OUT"
.venv/bin/priorviz-server --host 127.0.0.1 --port "$PORT" --torch-threads "$THREADS" >"$OUT/server.log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"   # graceful: health NOT_SERVING, in-flight jobs finish or are cancelled
    wait "$server" || true
  fi
}
trap stop_server EXIT

export PRIORVIZ_TARGET="127.0.0.1:$PORT"
echo "waiting for the server to load and warm its default model (health SERVING)..."
waited=0
until .venv/bin/priorviz health >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null || [ "$waited" -ge 300 ]; then
    echo "the server did not become SERVING; the end of $OUT/server.log:" >&2
    tail -n 20 "$OUT/server.log" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

# shellcheck disable=SC2086  # OBJECTIVES is a list of words on purpose
time .venv/bin/priorviz compare $OBJECTIVES --steps "$STEPS" --size "$SIZE" --out "$OUT"

echo "Open $OUT/report.html (contact sheet: $OUT/contact_sheet.png, numbers: $OUT/metrics.json)"
