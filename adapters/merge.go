package adapters

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
)

// MergeOptions tune Merge.
type MergeOptions struct {
	// Type is the merged model's file type ("f16", "q8_0", "q4_k_m", ...:
	// llama.FileTypeNames); "" keeps the base's own type.
	Type string
	// Scale multiplies the adapter (0: 1).
	Scale float32
	// Threads quantizing (0: 1).
	Threads int
}

// Merge writes to out the base model at basePath with the LoRA adapter at
// adapterPath folded into its weights, W + scale·(alpha/r)·B·A, so that
// llama.cpp and Ollama load it as a plain model. The adapted weights are
// merged in F32 into a temporary file beside out, which llama.cpp's own
// quantizer then writes as the file type asked for (the base's own type by
// default), choosing each tensor's type as llama.cpp does; tensors already
// of that type are copied as they are, and the base's metadata,
// vocabulary and chat template are kept. out is replaced atomically: a
// failure leaves neither out nor a temporary file. Merge returns the file
// type written.
func Merge(basePath, adapterPath, out string, opts MergeOptions) (llama.FileType, error) {
	scale := opts.Scale
	if scale == 0 {
		scale = 1
	}
	base, err := llama.OpenGGUF(basePath)
	if err != nil {
		return 0, err
	}
	var ft llama.FileType
	if opts.Type == "" {
		if ft, err = llama.FileTypeOf(base); err != nil {
			return 0, err
		}
	} else if ft, err = llama.ParseFileType(opts.Type); err != nil {
		return 0, err
	}
	l, err := Read(adapterPath)
	if err != nil {
		return 0, err
	}
	if l.Architecture != base.Architecture() {
		return 0, fmt.Errorf("%s: adapter is for architecture %q but %s is %q", adapterPath, l.Architecture, basePath, base.Architecture())
	}
	pairs := map[string]*Pair{}
	for i := range l.Pairs {
		p := &l.Pairs[i]
		w, ok := BaseWeight(base, p.Base)
		if !ok {
			return 0, fmt.Errorf("%s: adapts %s, which %s does not have (wrong base model?)", adapterPath, p.Base, basePath)
		}
		if d := p.BaseDims(); len(w.Dims) != 2 || int(w.Dims[0]) != d[0] || int(w.Dims[1]) != d[1] {
			return 0, fmt.Errorf("%s: %s is [%d, %d] in the adapter but %v in %s (wrong base model?)", adapterPath, p.Base, p.NIn, p.NOut, w.Dims, basePath)
		}
		pairs[p.Base] = p
	}
	s := scale * l.Alpha / float32(l.Pairs[0].Rank)
	// A tied base whose head or embedding is adapted gets a head of its own:
	// the adapter changes one and not the other.
	untie := Tied(base) && (pairs["output.weight"] != nil || pairs[EmbeddingWeight] != nil)
	var tensors []gguf.Tensor
	for _, ti := range base.Tensors {
		data, err := base.ReadTensorData(ti.Name)
		if err != nil {
			return 0, err
		}
		if untie && ti.Name == EmbeddingWeight {
			head := gguf.Tensor{Name: "output.weight", Dims: ti.Dims, Type: ti.Type, Data: data}
			if p := pairs["output.weight"]; p != nil {
				if head, err = merged(ti, data, p, s); err != nil {
					return 0, err
				}
				head.Name = "output.weight"
			}
			tensors = append(tensors, head)
		}
		p := pairs[ti.Name]
		if p == nil {
			tensors = append(tensors, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
			continue
		}
		t, err := merged(ti, data, p, s)
		if err != nil {
			return 0, err
		}
		tensors = append(tensors, t)
	}
	// The merged file keeps the base's general.file_type until the
	// quantizer sets the one written.
	kv := make([]gguf.KV, 0, len(base.KV))
	for _, e := range base.KV {
		if e.Key != "general.alignment" {
			kv = append(kv, e)
		}
	}
	dir, name := filepath.Dir(out), filepath.Base(out)
	f32, err := tempName(dir, "."+name+".merge-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f32)
	if err := gguf.Write(f32, kv, tensors); err != nil {
		return 0, err
	}
	tensors = nil
	tmp, err := tempName(dir, "."+name+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	if err := llama.Quantize(f32, tmp, ft, llama.QuantizeOptions{Threads: opts.Threads}); err != nil {
		var qe *llama.QuantizeError
		if errors.As(err, &qe) {
			return 0, fmt.Errorf("merge: %s with its adapter cannot be written as %s: %s", basePath, ft, qe.Reason)
		}
		return 0, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	return ft, nil
}

// tempName reserves a new file name in dir from pattern (os.CreateTemp's).
func tempName(dir, pattern string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	return name, nil
}

// merged is the base weight ti (its data in the file's type) plus s·B·A of
// p, in F32.
func merged(ti gguf.TensorInfo, data []byte, p *Pair, s float32) (gguf.Tensor, error) {
	d := p.BaseDims()
	w, err := ggml.Decode(ggml.Type(ti.Type), data, d[0])
	if err != nil {
		return gguf.Tensor{}, fmt.Errorf("merge: %s: %w", ti.Name, err)
	}
	if p.Embedding() {
		// Token i's row: W[i][o] += s · Σ_k B[o][k] · A[k][i].
		at := Transpose(p.A, p.NIn, p.Rank) // [i][k]
		for i := 0; i < p.NIn; i++ {
			ai, row := at[i*p.Rank:(i+1)*p.Rank], w[i*p.NOut:(i+1)*p.NOut]
			for o := range row {
				sum := float32(0)
				for k, bk := range p.B[o*p.Rank : (o+1)*p.Rank] {
					sum += bk * ai[k]
				}
				row[o] += s * sum
			}
		}
		return gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: gguf.TensorType(ggml.TypeF32), Data: gguf.F32Data(w)}, nil
	}
	// W[o][i] += s · Σ_k B[o][k] · A[k][i]
	for o := 0; o < p.NOut; o++ {
		for k := 0; k < p.Rank; k++ {
			b := s * p.B[o*p.Rank+k]
			if b == 0 {
				continue
			}
			a := p.A[k*p.NIn : (k+1)*p.NIn]
			row := w[o*p.NIn : (o+1)*p.NIn]
			for i := range row {
				row[i] += b * a[i]
			}
		}
	}
	return gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: gguf.TensorType(ggml.TypeF32), Data: gguf.F32Data(w)}, nil
}
