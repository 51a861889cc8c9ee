#!/usr/bin/env bash
# The demo behind `make demo`: build finetune, check the machine, describe a
# model and generate from it with and without a LoRA adapter.
# Uses ../shared/models/stories260K.gguf when present, else writes a random
# test model so the demo runs anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin/finetune}
out=${DEMO_DIR:-runs/demo}
mkdir -p "$out"

"$bin" doctor
echo
model=${FINETUNE_SHARED:-../shared}/models/stories260K.gguf
prompt="Once upon a time"
if [ ! -f "$model" ]; then
  echo "(no shared stories260K.gguf: using a random test model)"
  model="$out/testmodel.gguf"
  "$bin" testmodel --out "$model" --layers 4 --embd 128 --heads 8 --kv-heads 2 --byte-vocab --type q8_0
fi
"$bin" inspect "$model"
echo
"$bin" generate --model "$model" --prompt "$prompt" --max-tokens 64
