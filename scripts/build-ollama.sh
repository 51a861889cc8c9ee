#!/usr/bin/env bash
# Builds the real Ollama server from the ollama module version pinned in
# go.mod, for the tests that talk to a real server (evals' Ollama
# contestant), installs it as $FINETUNE_OLLAMA (default:
# $(go env GOPATH)/bin/ollama-<version>, where the tests look) and prints
# the path.
#
# With a version argument (scripts/build-ollama.sh v0.34.4) it builds that
# release instead, as $(go env GOPATH)/bin/ollama-<version>: the server of
# a newer Ollama for the publish tests (about a minute; its model runner,
# llama-server, is not part of a Go build, so it creates and shows models
# but cannot answer).
#
# Does nothing when that binary already exists. The build takes 8-10
# minutes (it uses about one core) (see ../shared/docs/backend.md, "A real Ollama
# server for tests"). Needs Debian's nlohmann-json3-dev and libstb-dev;
# miniaudio, which no package provides, comes from scripts/ollama-shim.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

# `build-ollama.sh VERSION dev` builds that release as a build from source
# does, without its version stamped in: /api/version then answers 0.0.0.
dev=${2:-}
if [ $# -gt 0 ]; then
  version=$1
  bin=$(go env GOPATH | cut -d: -f1)/bin/ollama-$version${dev:+-dev}
else
  version=$(go list -m -f '{{.Version}}' github.com/ollama/ollama)
  bin=${FINETUNE_OLLAMA:-$(go env GOPATH | cut -d: -f1)/bin/ollama-$version}
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
for h in /usr/include/nlohmann/json.hpp /usr/include/stb/stb_image.h; do
  if [ ! -f "$h" ]; then
    echo "build-ollama: $h is missing (apt-get install nlohmann-json3-dev libstb-dev)" >&2
    exit 1
  fi
done

# The same SIMD flags as the Makefile: without them ggml's CPU kernels are
# many times slower.
SIMD_FLAGS=${SIMD_FLAGS:--O3 -march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16}
export CGO_CFLAGS="$SIMD_FLAGS" CGO_CXXFLAGS="$SIMD_FLAGS"
export CGO_CPPFLAGS="-I$PWD/scripts/ollama-shim"
export CGO_ENABLED=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "build-ollama: building ollama $version (several minutes the first time)" >&2
ldflags="-X=github.com/ollama/ollama/version.Version=${version#v}"
if [ -n "$dev" ]; then
  ldflags=""
fi
GOBIN="$tmp" go install -ldflags="$ldflags" "github.com/ollama/ollama@$version"
mkdir -p "$(dirname "$bin")"
mv "$tmp/ollama" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"
