#!/usr/bin/env bash
# The GPU check, in two halves for a GPU machine that has nvcc and CMake but
# no Go and no network.
#
#   scripts/gpu-check.sh prepare   # here: the sources, finetune, the test and bench binaries
#                                  # and stories260K into .cache/gpu-check/ (carry it)
#   scripts/gpu-check.sh run       # there: builds libggml-cuda.so for the GPUs present with
#                                  # the system nvcc, then runs doctor, the device tests, the
#                                  # training benchmark (135M and Llama-3.2-1B shapes, F16,
#                                  # LoRA r16 on all seven projections, ctx 1024, peak GPU
#                                  # memory sampled by nvidia-smi) and PyTorch + PEFT (bf16)
#                                  # on the same shapes; figures go to $OUT (or the folder).
#
# Each step has a time limit, so that the whole run stays inside 8 minutes.
#
# The binaries are built for x86-64-v3 (AVX2), which every GPU host has.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/gpu-check

case "${1:-}" in
  prepare)
    command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
    rm -rf "$dir" && mkdir -p "$dir"
    scripts/build-ggml-backend.sh --export-src "$dir/src"
    flags="-O3 -march=x86-64-v3 -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CGO_ENABLED=1 CGO_CFLAGS="$flags"
    export CGO_CXXFLAGS="$flags"
    go build -ldflags="-s -w" -o "$dir/finetune" ./cmd/finetune
    go test -c -ldflags="-s -w" -o "$dir/ggml.test" ./internal/ggml
    go test -c -ldflags="-s -w" -o "$dir/lora.test" ./lora
    go build -ldflags="-s -w" -o "$dir/benchtrain" ./lora/internal/benchtrain
    mkdir -p "$dir/shared/models"
    shared=${FINETUNE_SHARED:-../shared}
    cp "$shared/models/stories260K.gguf" "$dir/shared/models/" 2>/dev/null || echo "no $shared/models/stories260K.gguf: its GPU test will skip" >&2
    du -sh "$dir" >&2
    ;;
  run)
    [ -x "$dir/ggml.test" ] || { echo "no $dir: run 'scripts/gpu-check.sh prepare' where Go is" >&2; exit 1; }
    start=$(date +%s)
    lib=$(scripts/build-ggml-backend.sh cuda --src "$dir/src" --out "$dir/lib")
    echo "libggml-cuda.so: $(du -h "$lib" | cut -f1), built or cached in $(( $(date +%s) - start ))s"
    FINETUNE_LIB_PATH="$dir/lib" "$dir/finetune" doctor | sed -n '/^backends/,$p'
    root=$(pwd)
    out=${OUT:-$root/$dir/out}
    mkdir -p "$out"
    export FINETUNE_LIB_PATH="$root/$dir/lib" FINETUNE_SHARED="$root/$dir/shared"
    (cd internal/ggml && timeout 60 "$root/$dir/ggml.test" -test.v -test.run 'TestGPUBackends') 2>&1 | tee "$out/ggml-test.txt" || true
    (cd lora && timeout 90 "$root/$dir/lora.test" -test.v -test.run 'TestGPU|TestTrainOnSecondBackend') 2>&1 | tee "$out/lora-test.txt" || true
    # Peak GPU memory: nvidia-smi sampled every 100 ms while each benchmark runs.
    for shape in "135M F16 ctx 1024 r16" "1B F16 ctx 1024 r16"; do
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$out/mem.txt" 2>/dev/null &
      smi=$!
      timeout 150 "$dir/benchtrain" -device cuda -only "$shape" -checkpointing off -steps 4 -warmup 1 -threads 8 \
        -cache "$root/$dir/models" 2>&1 | tee -a "$out/bench-train.txt" || true
      kill $smi 2>/dev/null || true
      echo "peak GPU memory used during \"$shape\": $(sort -n "$out/mem.txt" | tail -1) MiB (nvidia-smi, whole GPU)" | tee -a "$out/bench-train.txt"
    done
    timeout 150 python3 scripts/gpu-check/peft_bench.py --shapes 135M,1B --ctx 1024 2>&1 | tee "$out/peft-bench.txt" || true
    echo "gpu-check finished in $(( $(date +%s) - start ))s; figures in $out"
    ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|run" >&2
    exit 2
    ;;
esac
