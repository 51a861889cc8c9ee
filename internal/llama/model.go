package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// Model is a GGUF model loaded by llama.cpp. Close it when done.
type Model struct {
	c     *C.struct_llama_model
	vocab *C.struct_llama_vocab
	// Path is the file the model was loaded from.
	Path string
	// File is the file's parsed metadata and tensor list.
	File *gguf.File

	// allowed caches, for the greedy samplers of choices, the tokens a
	// grammar allows in a state (see Sampler.allowedNow).
	allowedMu sync.Mutex
	allowed   map[string][]Token
}

// ModelOptions tune loading.
type ModelOptions struct {
	// GPULayers is the number of layers to offload to a GPU (0: none, or
	// all of them when Device is set).
	GPULayers int
	// Device, a ggml device name ("CUDA0"; ggml.PickDevice), puts the
	// model on that device alone; "" keeps it on the CPU.
	Device string
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// VocabOnly loads only the tokenizer.
	VocabOnly bool
}

// OpenGGUF parses path's GGUF header with finetune's own reader, turning a
// missing, foreign or truncated file into an error that names it.
func OpenGGUF(path string) (*gguf.File, error) {
	if st, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file", path)
		}
		return nil, err
	} else if st.IsDir() {
		return nil, fmt.Errorf("%s: is a folder, not a GGUF file", path)
	}
	return gguf.Open(path)
}

// LoadModel loads a Llama-family GGUF model. The file is validated first:
// it must exist, be a complete GGUF file and have a supported architecture.
func LoadModel(path string, opts ModelOptions) (*Model, error) {
	Init()
	f, err := OpenGGUF(path)
	if err != nil {
		return nil, err
	}
	if err := CheckArchitecture(f); err != nil {
		return nil, err
	}
	if err := modelinfo.CheckLlama(f); err != nil {
		return nil, err
	}
	params := C.llama_model_default_params()
	params.n_gpu_layers = C.int32_t(opts.GPULayers)
	if opts.Device != "" && !opts.VocabOnly {
		if dev := deviceByName(opts.Device); dev == nil {
			return nil, fmt.Errorf("%s: no device %q to load the model on", path, opts.Device)
		}
	}
	if dev := deviceByName(opts.Device); dev != nil && !opts.VocabOnly && isGPU(dev) {
		devs := (*[2]C.ggml_backend_dev_t)(C.malloc(C.size_t(2 * unsafe.Sizeof(dev))))
		defer C.free(unsafe.Pointer(devs))
		devs[0], devs[1] = dev, nil
		params.devices = &devs[0]
		if opts.GPULayers == 0 {
			params.n_gpu_layers = 999 // every layer, and the output head
		}
	}
	params.use_mmap = C.bool(!opts.NoMmap)
	params.vocab_only = C.bool(opts.VocabOnly)
	cpath, free := cstr(path)
	defer free()
	ggml.TakeMessages()
	m := C.llama_model_load_from_file(cpath, params)
	if m == nil {
		return nil, cError("%s: llama.cpp could not load the model", path)
	}
	return &Model{c: m, vocab: C.llama_model_get_vocab(m), Path: path, File: f}, nil
}

// deviceByName is ggml's device of that name (nil: none, or name "").
func deviceByName(name string) C.ggml_backend_dev_t {
	if name == "" {
		return nil
	}
	cname, free := cstr(name)
	defer free()
	return C.ggml_backend_dev_by_name(cname)
}

// isGPU reports whether llama.cpp takes dev as a device to put layers on
// (accelerators such as BLAS it uses by itself, for the CPU's work).
func isGPU(dev C.ggml_backend_dev_t) bool {
	t := C.ggml_backend_dev_type(dev)
	return t == C.GGML_BACKEND_DEVICE_TYPE_GPU || t == C.GGML_BACKEND_DEVICE_TYPE_IGPU
}

// Close frees the model. Contexts and adapters made from it must be closed
// first.
func (m *Model) Close() {
	if m != nil && m.c != nil {
		C.llama_model_free(m.c)
		m.c = nil
		m.vocab = nil
	}
}

// Architecture is the model's general.architecture.
func (m *Model) Architecture() string { return m.File.Architecture() }

// ContextLength is the context the model was trained with.
func (m *Model) ContextLength() int { return int(C.llama_model_n_ctx_train(m.c)) }

// EmbeddingLength is the model's hidden size.
func (m *Model) EmbeddingLength() int { return int(C.llama_model_n_embd(m.c)) }

// Layers is the number of transformer blocks.
func (m *Model) Layers() int { return int(C.llama_model_n_layer(m.c)) }

// Heads is the number of attention heads.
func (m *Model) Heads() int { return int(C.llama_model_n_head(m.c)) }

// KVHeads is the number of key/value heads.
func (m *Model) KVHeads() int { return int(C.llama_model_n_head_kv(m.c)) }

// Params is the number of parameters llama.cpp counts.
func (m *Model) Params() uint64 { return uint64(C.llama_model_n_params(m.c)) }

// SizeBytes is the size of the model's weights in bytes.
func (m *Model) SizeBytes() uint64 { return uint64(C.llama_model_size(m.c)) }

// Description is llama.cpp's short description ("llama ?B all F32").
func (m *Model) Description() string {
	buf := make([]byte, 256)
	n := C.llama_model_desc(m.c, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return string(buf[:min(int(n), len(buf)-1)])
}

// ChatTemplate is the model's embedded chat template, or "" when it has
// none.
func (m *Model) ChatTemplate() string {
	t := C.llama_model_chat_template(m.c, nil)
	if t == nil {
		return ""
	}
	return C.GoString(t)
}

// Meta returns a metadata value as llama.cpp renders it.
func (m *Model) Meta(key string) (string, bool) {
	ckey, free := cstr(key)
	defer free()
	n := C.llama_model_meta_val_str(m.c, ckey, nil, 0)
	if n < 0 {
		return "", false
	}
	buf := make([]byte, int(n)+1)
	C.llama_model_meta_val_str(m.c, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return string(buf[:n]), true
}

// String names the model by its file.
func (m *Model) String() string { return m.Path }

// trimNUL drops a C string's terminator.
func trimNUL(s string) string { return strings.TrimRight(s, "\x00") }
