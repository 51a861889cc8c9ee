// Package capi holds capi.h, the one header that declares every ggml, gguf
// and llama.cpp function and struct finetune calls through cgo, and the test
// that proves those declarations match the real headers of the pinned
// github.com/ollama/ollama module.
//
// The cgo packages internal/ggml and internal/llama include capi.h; the C
// sources themselves are compiled by the ollama module's own Go packages,
// which those packages import for their symbols.
package capi
