#!/usr/bin/env bash
# The demo behind `make demo`: train the customer-support recipe's LoRA
# adapter on builtin:tiny (a small random model finetune writes itself, so
# nothing is downloaded), evaluate base vs tuned on the recipe's eval split,
# and print where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin/finetune}
recipe=${RECIPE:-recipes/customer-support.yaml}
start=$(date +%s)

"$bin" doctor | sed -n '1,4p'
echo
run=$("$bin" train "$recipe" "$@")
echo "run folder: $run"
"$bin" eval "$run"
echo
echo "demo finished in $(( $(date +%s) - start ))s"
echo "open $run/eval/report.html"
