#!/usr/bin/env bash
# The GPU check, in two halves for a GPU machine that has nvcc and CMake but
# no Go and no network.
#
#   scripts/gpu-check.sh prepare   # here: the sources, finetune and the ggml test binary
#                                  # into .cache/gpu-check/ (about 45 MiB; carry it)
#   scripts/gpu-check.sh run       # there: builds libggml-cuda.so for the GPUs present with
#                                  # the system nvcc, then runs doctor and the device tests
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
    go build -o "$dir/finetune" ./cmd/finetune
    go test -c -o "$dir/ggml.test" ./internal/ggml
    du -sh "$dir" >&2
    ;;
  run)
    [ -x "$dir/ggml.test" ] || { echo "no $dir: run 'scripts/gpu-check.sh prepare' where Go is" >&2; exit 1; }
    start=$(date +%s)
    lib=$(scripts/build-ggml-backend.sh cuda --src "$dir/src" --out "$dir/lib")
    echo "libggml-cuda.so: $(du -h "$lib" | cut -f1), built or cached in $(( $(date +%s) - start ))s"
    FINETUNE_LIB_PATH="$dir/lib" "$dir/finetune" doctor | sed -n '/^backends/,$p'
    cd internal/ggml
    FINETUNE_LIB_PATH="$(cd ../.. && pwd)/$dir/lib" "../../$dir/ggml.test" -test.v -test.run 'TestGPUBackends'
    ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|run" >&2
    exit 2
    ;;
esac
