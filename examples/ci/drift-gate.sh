#!/usr/bin/env sh
# Release gate for any CI: validate an ONNX model under simulated ReRAM drift and fail the job if it
# does not hold its accuracy. Needs only the runtime install (`pip install ftcompile`, no torch).
#
# Usage: drift-gate.sh MODEL.onnx DATA.npz [SIGMA=0.6] [MIN_ACCURACY=0.9] [OUT_DIR=drift-report]
# Env:   SAMPLES (Monte-Carlo samples, default 100), STAT (mean|p5|min, default mean),
#        FTCOMPILE (the command, default `ftcompile`).
# Exit:  0 pass, 1 gate failed, 2 bad input (model, data, flags), 3 internal error.
# Writes OUT_DIR/report.json, report.md (for a job summary) and junit.xml, also when the gate fails.
set -u
if [ $# -lt 2 ]; then
    echo "usage: drift-gate.sh MODEL.onnx DATA.npz [SIGMA] [MIN_ACCURACY] [OUT_DIR]" >&2
    exit 2
fi
model=$1
data=$2
sigma=${3:-0.6}
min_accuracy=${4:-0.9}
out=${5:-drift-report}
mkdir -p "$out" || exit 2

${FTCOMPILE:-ftcompile} validate "$model" --data "$data" --sigma "$sigma" \
    --samples "${SAMPLES:-100}" --min-accuracy "$min_accuracy" --stat "${STAT:-mean}" \
    --report "$out/report.json" --markdown "$out/report.md" --junit "$out/junit.xml" --quiet
status=$?
case $status in
    0) echo "drift gate: PASS ($model at sigma $sigma, ${STAT:-mean} accuracy >= $min_accuracy)" ;;
    1) echo "drift gate: FAIL ($model at sigma $sigma: ${STAT:-mean} accuracy below $min_accuracy; see $out/report.md)" ;;
    *) echo "drift gate: ERROR (exit $status, nothing was gated)" ;;
esac
exit $status
