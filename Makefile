# finetune build. ggml's CPU kernels are only fast when compiled for the SIMD
# the CPU has (about 50x for F32 matrix products), so every target builds with
# the same flags: identical flags let Go's build cache reuse the compiled ggml
# and llama.cpp objects across build, test and vet.
#
# -march=native alone fails to link: ggml's AMX sources are not part of the
# ollama module's Go packages, hence -mno-amx-*.
SIMD_FLAGS ?= -O3 -march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
# gcc 12's -Wstringop-overflow misfires on ggml's repack.cpp (a memcpy of 8
# bytes inside a 72-byte block read as 64 bytes into none): ten lines of
# warning on every first build, about code that is not wrong.
QUIET_FLAGS ?= -Wno-stringop-overflow
export CGO_CFLAGS := $(SIMD_FLAGS) $(QUIET_FLAGS)
export CGO_CXXFLAGS := $(SIMD_FLAGS) $(QUIET_FLAGS)
export CGO_ENABLED := 1

GO ?= go
BIN ?= bin/finetune
# The module's folder, downloaded first: on a machine whose module cache is
# empty (a fresh one), go list -m reports no folder until the module is there,
# and the llama.cpp commit would be left out of the binary. Recursive (=), so
# only the targets that use LDFLAGS pay for it.
OLLAMA_DIR = $(shell $(GO) mod download github.com/ollama/ollama && $(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama)
LLAMA_COMMIT = $(shell sed -n 's/^FETCH_HEAD=//p' $(OLLAMA_DIR)/Makefile.sync 2>/dev/null)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS = -X main.version=$(VERSION) -X main.llamaCommit=$(LLAMA_COMMIT) -X main.buildFlags=$(subst $(space),_,$(SIMD_FLAGS))
space := $(subst ,, )
TEST_FLAGS ?= -timeout 30m

.PHONY: build install test vet demo clean bench-train blas cuda

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/finetune

install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/finetune

test:
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin

# ggml's BLAS and CUDA backends as loadable libraries in bin/lib, beside
# bin/finetune, built from the ollama module's sources and cached in
# ~/.cache/finetune/ggml-backends (scripts/build-ggml-backend.sh -h for the
# options: BACKEND_FLAGS='--archs 90', CUDA_ARCHITECTURES, --src, --nvcc).
blas:
	scripts/build-ggml-backend.sh blas $(BACKEND_FLAGS)

cuda:
	scripts/build-ggml-backend.sh cuda $(BACKEND_FLAGS)

demo: build
	BIN=$(BIN) scripts/demo.sh

# LoRA training speed on the tracked shapes (generates test models in
# $TMPDIR/finetune-bench) and on the real SmolLM2-135M-Instruct from the
# shared folder, its Q4_1 file and an F32 copy written there once
# (BENCH_FLAGS='-only smollm2 -checkpointing off,on -trained 1,0.45': those rows alone;
# -targets all, -dropout 0.05 and -precision f32|bf16|auto as a recipe sets them; -profile: time
# per op kind; -val: validation seconds per window; -kernels: ggml's products per weight type).
bench-train:
	$(GO) run ./lora/internal/benchtrain $(BENCH_FLAGS)

# finetune beside Hugging Face PEFT + transformers in PyTorch (CPU, fp32) on
# the same training work: tokens/s, peak RSS and the ratio for the 58M and
# 135M shapes at ctx 256 and 512, and for SmolLM2-135M-Instruct at ctx 512
# (its Q4_1 file and an F32 copy; PEFT also with bf16 autocast;
# BENCH_PEER_FLAGS=-only smollm2 runs those alone). The PEFT side needs
# scripts/install-pyref.sh.
.PHONY: bench-peer
bench-peer:
	$(GO) run ./lora/internal/benchpeer $(BENCH_PEER_FLAGS)

# finetune serve beside Ollama (the pinned 0.17.4, scripts/build-ollama.sh)
# serving the merged models, on SmolLM2-135M-Instruct with three adapters
# trained briefly (kept in $TMPDIR/finetune-bench-serve): tokens/s of one
# stream and of 8 concurrent ones, alternated, and the memory of one base
# with 3 adapters against 3 merged models (FINETUNE_BENCH_THREADS, _ROUNDS,
# _TOKENS, _STEPS change the defaults 1, 2, 64, 8).
.PHONY: bench-serve
bench-serve:
	FINETUNE_BENCH_SERVE=1 $(GO) test ./serve -run TestBenchServe -count=1 -v -timeout 60m

# The datasets pipeline's figures: records/s and tokens/s for reading,
# rendering and tokenizing 100k synthetic chat records, and the peak RSS of
# streaming a 1 GB JSONL file through it (data generated in a temporary
# folder and deleted afterwards; needs about 1.5 GB free there).
.PHONY: bench-data
bench-data:
	$(GO) run ./datasets/internal/benchdata $(BENCH_DATA_FLAGS)

# Eval's local decoding on SmolLM2-135M-Instruct from the shared folder:
# the customer-support eval cases x {base, base + a LoRA adapter}, answered
# as `finetune eval` answers them (BENCH_EVAL_FLAGS='-cases 300' is the
# full size; -choices constrains the answers to the intent labels).
.PHONY: bench-eval
bench-eval:
	$(GO) run ./evals/internal/bencheval $(BENCH_EVAL_FLAGS)
