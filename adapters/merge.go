package adapters

import (
	"fmt"
	"strings"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
)

// mergeTypes are the types a merged weight can be written in, with their
// general.file_type.
var mergeTypes = map[string]struct {
	t  ggml.Type
	ft uint32
}{"f32": {ggml.TypeF32, 0}, "f16": {ggml.TypeF16, 1}, "q8_0": {ggml.TypeQ8_0, 7}}

// Merge writes to out the base model at basePath with the LoRA adapter at
// adapterPath folded into its weights, W + scale·(alpha/r)·B·A, so that
// llama.cpp and Ollama load it as a plain model. Adapted weights are
// written in typ (f32, f16 or q8_0); every other tensor and all metadata
// are copied as they are.
func Merge(basePath, adapterPath, out, typ string, scale float32) error {
	mt, ok := mergeTypes[strings.ToLower(typ)]
	if !ok {
		return fmt.Errorf("merge: unknown type %q (use f32, f16 or q8_0)", typ)
	}
	base, err := gguf.Open(basePath)
	if err != nil {
		return err
	}
	l, err := Read(adapterPath)
	if err != nil {
		return err
	}
	if l.Architecture != base.Architecture() {
		return fmt.Errorf("%s: adapter is for architecture %q but %s is %q", adapterPath, l.Architecture, basePath, base.Architecture())
	}
	pairs := map[string]*Pair{}
	for i := range l.Pairs {
		p := &l.Pairs[i]
		w, ok := base.Tensor(p.Base)
		if !ok {
			return fmt.Errorf("%s: adapts %s, which %s does not have (wrong base model?)", adapterPath, p.Base, basePath)
		}
		if len(w.Dims) != 2 || int(w.Dims[0]) != p.NIn || int(w.Dims[1]) != p.NOut {
			return fmt.Errorf("%s: %s is [%d, %d] in the adapter but %v in %s (wrong base model?)", adapterPath, p.Base, p.NIn, p.NOut, w.Dims, basePath)
		}
		if p.NIn%mt.t.BlockSize() != 0 {
			return fmt.Errorf("merge: %s rows of %d values cannot be stored as %s", p.Base, p.NIn, typ)
		}
		pairs[p.Base] = p
	}
	s := scale * l.Alpha / float32(l.Pairs[0].Rank)
	var tensors []gguf.Tensor
	for _, ti := range base.Tensors {
		data, err := base.ReadTensorData(ti.Name)
		if err != nil {
			return err
		}
		p := pairs[ti.Name]
		if p == nil {
			tensors = append(tensors, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
			continue
		}
		w, err := ggml.Decode(ggml.Type(ti.Type), data, p.NIn)
		if err != nil {
			return fmt.Errorf("merge: %s: %w", ti.Name, err)
		}
		// W[o][i] += s · Σ_k B[o][k] · A[k][i]
		for o := 0; o < p.NOut; o++ {
			row := w[o*p.NIn : (o+1)*p.NIn]
			for k := 0; k < p.Rank; k++ {
				b := s * p.B[o*p.Rank+k]
				if b == 0 {
					continue
				}
				a := p.A[k*p.NIn : (k+1)*p.NIn]
				for i := range row {
					row[i] += b * a[i]
				}
			}
		}
		enc, err := ggml.Encode(mt.t, w, p.NIn)
		if err != nil {
			return fmt.Errorf("merge: %s: %w", ti.Name, err)
		}
		tensors = append(tensors, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: gguf.TensorType(mt.t), Data: enc})
	}
	// general.file_type names the type of the merged (adapted) weights.
	kv := make([]gguf.KV, 0, len(base.KV)+1)
	for _, e := range base.KV {
		if e.Key != "general.alignment" && e.Key != "general.file_type" {
			kv = append(kv, e)
		}
	}
	kv = append(kv, gguf.KV{Key: "general.file_type", Value: mt.ft})
	return gguf.Write(out, kv, tensors)
}
