#!/usr/bin/env bash
# Builds one of ggml's backends as a dynamically loaded library
# (libggml-BACKEND.so, the GGML_BACKEND_DL kind Ollama loads from lib/ollama)
# from the ollama module's own sources, out of tree, and installs it into
# bin/lib/ beside bin/finetune, where finetune looks for it.
#
#   scripts/build-ggml-backend.sh blas            # OpenBLAS (apt: libopenblas-dev pkg-config)
#   scripts/build-ggml-backend.sh cuda            # nvcc from the system, else CUDA 13.0 from PyPI
#   scripts/build-ggml-backend.sh cuda --archs 90 --src DIR   # a machine without Go or network
#   scripts/build-ggml-backend.sh --export-src DIR            # copy the sources --src needs
#
# The library is not linked against libggml-base.so: finetune links ggml's
# core statically and exports it (-rdynamic), and the backend resolves its
# ggml_* symbols against the executable, so a process holds exactly one ggml
# core and one backend registry (scripts/ggml-backend/no-ggml-base.cmake).
#
# Builds are cached in ${FINETUNE_CACHE:-~/.cache/finetune}/ggml-backends/KEY/,
# KEY from the sources, backend, toolkit, architectures and this script, so a
# second run only copies the library. The library path is printed on stdout;
# progress goes to stderr.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: scripts/build-ggml-backend.sh BACKEND [options]
       scripts/build-ggml-backend.sh --export-src DIR [--src DIR]

BACKEND       blas | cuda
--src DIR     Ollama source tree holding CMakeLists.txt, CMakePresets.json and
              ml/backend/ggml/ggml (default: the pinned module, via go list -m)
--out DIR     install folder (default: bin/lib in this repository; "" for none)
--archs LIST  CUDA architectures, e.g. 90 or "80;90" (default: $CUDA_ARCHITECTURES,
              else the compute capabilities nvidia-smi reports)
--cuda VER    CUDA from PyPI wheels when no system nvcc is used: 13.0 (the one known)
--nvcc PATH   this nvcc (a system toolkit); default: nvcc on PATH or in /usr/local/cuda
--pypi        use the PyPI toolkit even when a system nvcc exists
--jobs N      parallel compile jobs (default: every core)
--force       build again even when cached
EOF
  exit 2
}

# Part of the cache key: raise it when a change to this script changes what
# it builds.
recipe=2

die() { echo "build-ggml-backend: $*" >&2; exit 1; }
say() { echo "build-ggml-backend: $*" >&2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
hook="$repo/scripts/ggml-backend/no-ggml-base.cmake"
cache="${FINETUNE_CACHE:-$HOME/.cache/finetune}"

backend="" src="" out="$repo/bin/lib" archs="${CUDA_ARCHITECTURES:-}" cuda_version="13.0"
nvcc="" pypi=0 jobs=$(nproc) force=0 export_src=""
while [ $# -gt 0 ]; do
  case "$1" in
    --src) src=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --archs) archs=$2; shift 2 ;;
    --cuda) cuda_version=$2; shift 2 ;;
    --nvcc) nvcc=$2; shift 2 ;;
    --pypi) pypi=1; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --force) force=1; shift ;;
    --export-src) export_src=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$backend" ] || usage; backend=$1; shift ;;
  esac
done

# The sources: the pinned module (read-only in Go's module cache) or a copy.
version=""
if [ -z "$src" ]; then
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "Go is needed to find the ollama module; or pass --src DIR"
  src=$(cd "$repo" && go list -m -f '{{.Dir}}' github.com/ollama/ollama)
  version=$(cd "$repo" && go list -m -f '{{.Version}}' github.com/ollama/ollama)
  [ -n "$src" ] || die "the ollama module is not in Go's module cache: run 'go mod download' first"
fi
src=$(cd "$src" && pwd)
ggml="$src/ml/backend/ggml/ggml"
[ -f "$src/CMakeLists.txt" ] && [ -f "$src/CMakePresets.json" ] && [ -d "$ggml/src" ] ||
  die "$src does not hold Ollama's CMakeLists.txt, CMakePresets.json and ml/backend/ggml/ggml"
if [ -z "$version" ]; then
  version=$(cat "$src/.finetune-ollama-version" 2>/dev/null || echo src)
fi

if [ -n "$export_src" ]; then
  mkdir -p "$export_src/ml/backend/ggml"
  cp "$src/CMakeLists.txt" "$src/CMakePresets.json" "$export_src/"
  rm -rf "$export_src/ml/backend/ggml/ggml"
  cp -r "$ggml" "$export_src/ml/backend/ggml/ggml"
  chmod -R u+w "$export_src"
  echo "$version" >"$export_src/.finetune-ollama-version"
  say "copied the ollama $version sources the backends need to $export_src ($(du -sh "$export_src" | cut -f1))"
  exit 0
fi

[ -n "$backend" ] || usage
command -v cmake >/dev/null || die "CMake is needed (apt-get install cmake)"
cmv=$(cmake --version | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ "${cmv% *}" -lt 3 ] || { [ "${cmv% *}" -eq 3 ] && [ "${cmv#* }" -lt 21 ]; }; then
  die "CMake ${cmv/ /.} is too old: Ollama's CMakeLists.txt and presets need 3.21 (pip install cmake has a newer one)"
fi

cmake_args=(-DCMAKE_PROJECT_INCLUDE="$hook" -DFINETUNE_BACKENDS="ggml-$backend" -DGGML_CCACHE=OFF)
toolkit=""
case "$backend" in
  blas)
    preset="CPU"
    if ! pkg-config --exists openblas 2>/dev/null && [ ! -f /usr/include/x86_64-linux-gnu/cblas.h ] && [ ! -f /usr/include/cblas.h ]; then
      die "OpenBLAS is missing: apt-get install libopenblas-dev pkg-config"
    fi
    cmake_args+=(-DGGML_BLAS=ON -DGGML_BLAS_VENDOR=OpenBLAS)
    toolkit="openblas $(pkg-config --modversion openblas 2>/dev/null || echo unknown)"
    ;;
  cuda)
    if [ -z "$nvcc" ] && [ "$pypi" = 0 ]; then
      if command -v nvcc >/dev/null; then
        nvcc=$(command -v nvcc)
      elif [ -x /usr/local/cuda/bin/nvcc ]; then
        nvcc=/usr/local/cuda/bin/nvcc
      fi
    fi
    if [ -n "$nvcc" ]; then
      [ -x "$nvcc" ] || die "$nvcc is not an executable nvcc"
      root=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
      say "CUDA toolkit: $root (system)"
    else
      # NVIDIA's PyPI wheels: nvcc, nvvm, the runtime, cuBLAS and CCCL, all
      # pinned to one release, in a virtual environment of their own.
      case "$cuda_version" in
        13.0) pkgs=(nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cublas nvidia-cuda-cccl nvidia-nvvm nvidia-cuda-crt) pin="==13.0.*" ;;
        12*) die "--cuda $cuda_version: PyPI's CUDA 12 compiler wheel (nvidia-cuda-nvcc-cu12 12.9.86) holds ptxas but no nvcc; use 13.0, or a CUDA 12 toolkit with --nvcc" ;;
        *) die "--cuda $cuda_version: only 13.0 is known" ;;
      esac
      venv="$cache/cuda-$cuda_version"
      if [ ! -f "$venv/.complete" ]; then
        command -v python3 >/dev/null || die "python3 is needed to install CUDA $cuda_version from PyPI"
        say "installing CUDA $cuda_version (nvcc, runtime, cuBLAS, CCCL) from PyPI into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]/%/$pin}" >&2
        touch "$venv/.complete"
      fi
      site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      root="$site/nvidia/cu13"
      nvcc="$root/bin/nvcc"
      [ -x "$nvcc" ] || die "no nvcc in $root after installing the wheels"
      # nvcc links from lib64/, CMake looks for the unversioned names and
      # for libcuda in stubs/ (the driver is there only on a GPU machine):
      # make all three.
      [ -e "$root/lib64" ] || ln -s lib "$root/lib64"
      for lib in "$root"/lib/lib*.so.[0-9]*; do
        base="${lib%.so.*}.so"
        [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
      done
      # The stub defines the driver functions ggml-cuda calls (its VMM
      # pool), so the linker records libcuda.so.1 as needed; the check after
      # the build names any it misses.
      if [ ! -e "$root/lib/stubs/libcuda.so" ] || ! grep -q cuMemCreate "$root/lib/stubs/stub.c" 2>/dev/null; then
        mkdir -p "$root/lib/stubs"
        for fn in cuDeviceGet cuDeviceGetAttribute cuGetErrorString cuMemAddressFree cuMemAddressReserve \
          cuMemCreate cuMemGetAllocationGranularity cuMemMap cuMemRelease cuMemSetAccess cuMemUnmap \
          cuInit cuDriverGetVersion cuCtxGetCurrent cuCtxSetCurrent cuDevicePrimaryCtxRetain; do
          echo "int $fn(void) { return 999; }"
        done >"$root/lib/stubs/stub.c"
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/stub.c"
      fi
      say "CUDA toolkit: $root (PyPI, CUDA $cuda_version)"
    fi
    release=$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1.\2/p')
    [ -n "$release" ] || die "cannot read the release of $nvcc"
    preset="CUDA ${release%%.*}"
    if [ -z "$archs" ] && command -v nvidia-smi >/dev/null; then
      archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | paste -sd';' || true)
    fi
    [ -n "$archs" ] || die "no GPU found to build for: give the CUDA architectures with --archs (e.g. --archs 90 for H100/H200, \"80;86;89;90\") or CUDA_ARCHITECTURES"
    # The library finds the toolkit's cudart and cuBLAS where it was built,
    # else beside itself or on the system's library path.
    libdir="$root/lib64"
    [ -d "$libdir" ] || libdir="$root/lib"
    cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$root" -DCMAKE_CUDA_ARCHITECTURES="$archs" -DCMAKE_CUDA_FLAGS=""
      -DFINETUNE_RPATH="$(readlink -f "$libdir")")
    toolkit="cuda $release ($("$nvcc" --version | tail -1)) archs $archs"
    ;;
  rocm|hip)
    die "$backend: not built by this script (no ROCm toolchain on these machines); Ollama's preset \"ROCm 6\" is the starting point"
    ;;
  *) usage ;;
esac

# The cache key: the sources' content, the backend, the toolkit, the
# architectures, the CMake arguments and the build recipe (the hook and
# recipe, to be raised whenever a change here changes what is built).
srcsum=$(cd "$src" && find CMakeLists.txt CMakePresets.json ml/backend/ggml/ggml -type f \
  ! -name '*.go' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
keysum=$( { echo "$srcsum"; echo "$backend"; echo "$toolkit"; echo "$preset"; printf '%s\n' "${cmake_args[@]}" | sed "s|$repo|REPO|g; s|$cache|CACHE|g"
  echo "recipe $recipe"; cat "$hook"; } | sha256sum | cut -c1-16)
key="$backend-$version-$keysum"
dir="$cache/ggml-backends/$key"
lib="$dir/libggml-$backend.so"

if [ "$force" = 1 ] || [ ! -f "$lib" ]; then
  mkdir -p "$dir"
  build="$dir/build"
  log="$dir/build.log"
  rm -rf "$build"
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  say "building libggml-$backend.so from ollama $version ($toolkit), log in $log"
  start=$(date +%s)
  if ! { cmake -S "$src" -B "$build" --preset "$preset" "${gen[@]}" "${cmake_args[@]}" &&
         cmake --build "$build" --target "ggml-$backend" -j "$jobs"; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    die "the build failed; the whole log is $log"
  fi
  secs=$(( $(date +%s) - start ))
  built=$(find "$build" -name "libggml-$backend.so" -type f | head -1)
  [ -n "$built" ] || die "the build made no libggml-$backend.so (see $log)"
  if readelf -d "$built" | grep -q 'NEEDED.*libggml'; then
    die "$built still needs a libggml core library: the no-ggml-base hook did not apply"
  fi
  driver=$(nm -D --undefined-only "$built" | awk '$2 ~ /^cu[A-Z]/ {print $2}' | paste -sd' ')
  if [ -n "$driver" ] && ! readelf -d "$built" | grep -q 'NEEDED.*libcuda\.so'; then
    die "$built calls the CUDA driver ($driver) but does not need libcuda.so.1: the libcuda stub lacks them"
  fi
  cp "$built" "$lib.tmp" && mv "$lib.tmp" "$lib"
  {
    echo "backend: $backend"
    echo "ollama: $version (sources $srcsum at $src)"
    echo "toolkit: $toolkit"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${secs}s with $jobs jobs"
    echo "size: $(stat -c %s "$lib") bytes"
    echo "needs: $(readelf -d "$lib" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | paste -sd' ')"
  } >"$dir/info"
  rm -rf "$build"
  say "built in ${secs}s: $lib ($(du -h "$lib" | cut -f1))"
else
  say "cached: $lib"
fi

if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$lib" "$out/.libggml-$backend.so.tmp"
  mv "$out/.libggml-$backend.so.tmp" "$out/libggml-$backend.so"
  echo "$out/libggml-$backend.so"
else
  echo "$lib"
fi
