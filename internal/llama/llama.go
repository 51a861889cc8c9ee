// Package llama is finetune's cgo binding to the llama.cpp bundled in the
// github.com/ollama/ollama module: loading GGUF models, tokenizing, chat
// templates, LoRA adapters, decoding and sampling.
//
// Every C object is owned by a Go value with a Close method; nothing in C
// outlives the value that made it, and nothing relies on finalizers. Files
// are checked in Go (internal/gguf) before llama.cpp sees them, so a bad file
// gives an error that names it instead of a crash, and when llama.cpp still
// refuses, its own log lines say why in the returned error.
package llama

/*
#cgo CPPFLAGS: -I${SRCDIR}/../capi
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"

	_ "github.com/ollama/ollama/llama/llama.cpp/src"
)

var initOnce sync.Once

// Init initializes llama.cpp's backend once per process and routes its log
// output through internal/ggml. Every constructor calls it.
func Init() {
	initOnce.Do(func() {
		C.llama_log_set(C.ggml_log_callback(ggml.LogCallback()), nil)
		C.llama_backend_init()
	})
}

// SystemInfo is llama.cpp's own one-line description of the build.
func SystemInfo() string {
	Init()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// SupportsGPUOffload reports whether a GPU backend is loaded.
func SupportsGPUOffload() bool {
	Init()
	return bool(C.llama_supports_gpu_offload())
}

// SupportedArchitectures are the GGUF architectures finetune works with.
var SupportedArchitectures = []string{"llama"}

// ErrUnsupportedArchitecture is wrapped by the error for a model whose
// architecture finetune does not support.
var ErrUnsupportedArchitecture = errors.New("unsupported architecture")

// CheckArchitecture returns an error naming the file when f's architecture is
// not one finetune supports.
func CheckArchitecture(f *gguf.File) error {
	arch := f.Architecture()
	for _, a := range SupportedArchitectures {
		if arch == a {
			return nil
		}
	}
	if arch == "" {
		return fmt.Errorf("%s: %w: the file has no general.architecture (is it a model?)", f.Path, ErrUnsupportedArchitecture)
	}
	return fmt.Errorf("%s: %w %q: finetune works with %s models", f.Path, ErrUnsupportedArchitecture, arch, strings.Join(SupportedArchitectures, ", "))
}

// cError builds the error for a failed C call: what failed, plus the
// warnings and errors the C code logged while failing.
func cError(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if lines := ggml.TakeMessages(); len(lines) > 0 {
		msg += ": " + strings.Join(lines, "; ")
	}
	return errors.New(msg)
}

// cstr returns a C copy of s and the function that frees it.
func cstr(s string) (*C.char, func()) {
	p := C.CString(s)
	return p, func() { C.free(unsafe.Pointer(p)) }
}
