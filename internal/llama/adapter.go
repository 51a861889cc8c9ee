package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"strings"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
)

// Adapter is a LoRA adapter loaded for a model. Close it before the model.
type Adapter struct {
	c     *C.struct_llama_adapter_lora
	Path  string
	Alpha float64
	Rank  int
}

// LoadAdapter loads a LoRA adapter in llama.cpp's GGUF format for m. The
// file is checked against the model first, so an adapter made for another
// base is refused with the first tensor that does not fit.
func LoadAdapter(m *Model, path string) (*Adapter, error) {
	f, err := OpenGGUF(path)
	if err != nil {
		return nil, err
	}
	rank, err := CheckAdapter(f, m.File)
	if err != nil {
		return nil, err
	}
	if err := f.CheckTensorData(); err != nil {
		return nil, err
	}
	alpha, _ := f.Float("adapter.lora.alpha")
	cpath, free := cstr(path)
	defer free()
	ggml.TakeMessages()
	a := C.llama_adapter_lora_init(m.c, cpath)
	if a == nil {
		return nil, cError("%s: llama.cpp could not load the adapter", path)
	}
	return &Adapter{c: a, Path: path, Alpha: alpha, Rank: rank}, nil
}

// Close frees the adapter.
func (a *Adapter) Close() {
	if a != nil && a.c != nil {
		C.llama_adapter_lora_free(a.c)
		a.c = nil
	}
}

// CheckAdapter verifies that adapter is a LoRA adapter in llama.cpp's GGUF
// format that fits base: same architecture, and for every base tensor it
// adapts, lora_a of shape [n_in, r] and lora_b of shape [r, n_out] where the
// base weight is [n_in, n_out]. It returns the rank.
func CheckAdapter(adapter, base *gguf.File) (int, error) {
	p := adapter.Path
	if t, _ := adapter.String("general.type"); t != "adapter" {
		return 0, fmt.Errorf("%s: not an adapter (general.type is %q, expected \"adapter\")", p, t)
	}
	if t, _ := adapter.String("adapter.type"); t != "lora" {
		return 0, fmt.Errorf("%s: not a LoRA adapter (adapter.type is %q, expected \"lora\")", p, t)
	}
	if a, b := adapter.Architecture(), base.Architecture(); a != b {
		return 0, fmt.Errorf("%s: adapter is for architecture %q but the base model %s is %q", p, a, base.Path, b)
	}
	type pair struct{ a, b *gguf.TensorInfo }
	pairs := map[string]*pair{}
	var order []string
	for i := range adapter.Tensors {
		t := &adapter.Tensors[i]
		name, suffix, ok := cutLoRASuffix(t.Name)
		if !ok {
			return 0, fmt.Errorf("%s: tensor %q is neither a .lora_a nor a .lora_b tensor", p, t.Name)
		}
		pr := pairs[name]
		if pr == nil {
			pr = &pair{}
			pairs[name] = pr
			order = append(order, name)
		}
		if suffix == "a" {
			pr.a = t
		} else {
			pr.b = t
		}
	}
	if len(order) == 0 {
		return 0, fmt.Errorf("%s: adapter has no tensors", p)
	}
	rank := 0
	for _, name := range order {
		pr := pairs[name]
		if pr.a == nil || pr.b == nil {
			return 0, fmt.Errorf("%s: %s has only one of lora_a and lora_b", p, name)
		}
		_, hasHead := base.Tensor("output.weight")
		w, ok := base.Tensor(name)
		switch {
		case !ok && name == "output.weight":
			return 0, fmt.Errorf("%s: adapts the output head, but the base model %s ties its head to the token embedding (no output.weight): use the base untied by finetune (finetune publish does this), or merge the adapter", p, base.Path)
		case !ok:
			return 0, fmt.Errorf("%s: adapts %s, which the base model %s does not have (wrong base model?)", p, name, base.Path)
		case name == "token_embd.weight" && !hasHead:
			// llama.cpp would apply the pair to the tied head as well, with
			// the embedding's shapes: an abort inside ggml.
			return 0, fmt.Errorf("%s: adapts the token embedding, but the base model %s ties its output head to it (no output.weight): use the base untied by finetune (finetune publish does this), or merge the adapter", p, base.Path)
		}
		if len(w.Dims) != 2 || len(pr.a.Dims) != 2 || len(pr.b.Dims) != 2 {
			return 0, fmt.Errorf("%s: %s: LoRA tensors and their base weight must be 2-D", p, name)
		}
		nIn, nOut := w.Dims[0], w.Dims[1]
		r, aIn := pr.a.Dims[1], pr.a.Dims[0]
		if name == "token_embd.weight" {
			// Applied as B·A[token]: lora_a is [r, n_vocab], lora_b [r, n_embd].
			nIn, nOut, r, aIn = w.Dims[1], w.Dims[0], pr.a.Dims[0], w.Dims[1]
			if pr.a.Dims[1] != w.Dims[1] {
				return 0, fmt.Errorf("%s: %s.lora_a has %d rows but the base model %s has %d tokens (wrong base model?)", p, name, pr.a.Dims[1], base.Path, w.Dims[1])
			}
		}
		switch {
		case aIn != nIn:
			return 0, fmt.Errorf("%s: %s.lora_a takes %d inputs but the base weight in %s takes %d (wrong base model?)", p, name, aIn, base.Path, nIn)
		case pr.b.Dims[1] != nOut:
			return 0, fmt.Errorf("%s: %s.lora_b gives %d outputs but the base weight in %s gives %d (wrong base model?)", p, name, pr.b.Dims[1], base.Path, nOut)
		case pr.b.Dims[0] != r:
			return 0, fmt.Errorf("%s: %s: lora_a has rank %d but lora_b has rank %d", p, name, r, pr.b.Dims[0])
		case r == 0:
			return 0, fmt.Errorf("%s: %s has rank 0", p, name)
		}
		if rank == 0 {
			rank = int(r)
		}
	}
	return rank, nil
}

func cutLoRASuffix(name string) (base, ab string, ok bool) {
	if b, found := strings.CutSuffix(name, ".lora_a"); found {
		return b, "a", true
	}
	if b, found := strings.CutSuffix(name, ".lora_b"); found {
		return b, "b", true
	}
	return "", "", false
}
