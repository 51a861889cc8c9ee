// Package adapters reads and writes LoRA adapters in llama.cpp's GGUF
// adapter format, the one llama.cpp and Ollama load next to a base model:
//
//   - metadata general.type = "adapter", general.architecture = the base's
//     architecture, adapter.type = "lora", adapter.lora.alpha (float32);
//   - for each adapted base weight W of ggml shape [n_in, n_out], tensors
//     "<W name>.lora_a" of shape [n_in, r] and "<W name>.lora_b" of shape
//     [r, n_out];
//   - applied as W·x + scale·B·(A·x), scale = user scale · alpha / r;
//   - except for the token embedding ("token_embd.weight", [n_embd, n_vocab]),
//     whose update llama.cpp adds as scale·B·A[token]: its lora_a is stored
//     [r, n_vocab] (one row of r values per token) and lora_b [r, n_embd].
//
// A Pair holds every update in one layout, the embedding's too (as the
// linear map from a one-hot token, NIn = n_vocab, NOut = n_embd); Write and
// Read turn the embedding's A around.
package adapters

import (
	"fmt"
	"sort"
	"strings"

	"github.com/finetune-dev/finetune/internal/gguf"
)

// Pair is the low-rank update of one base weight, in row-major ggml order:
// A holds Rank rows of NIn values, B holds NOut rows of Rank values. For the
// token embedding NIn is the vocabulary and NOut the embedding size.
type Pair struct {
	Base string // the base tensor, e.g. "blk.0.attn_q.weight"
	NIn  int
	NOut int
	Rank int
	A    []float32 // ggml shape [NIn, Rank]
	B    []float32 // ggml shape [Rank, NOut]
}

// LoRA is a whole adapter.
type LoRA struct {
	Architecture string
	Alpha        float32
	Pairs        []Pair
	// Meta is extra metadata written with the adapter (string, number or
	// bool values), e.g. the training run that made it.
	Meta []gguf.KV
}

// Write writes l to path atomically in llama.cpp's GGUF LoRA format, with
// F32 tensors.
func Write(path string, l *LoRA) error {
	if l.Architecture == "" {
		return fmt.Errorf("%s: adapter has no architecture", path)
	}
	if len(l.Pairs) == 0 {
		return fmt.Errorf("%s: adapter has no tensors", path)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: l.Architecture},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: l.Alpha},
	}
	kv = append(kv, l.Meta...)
	var tensors []gguf.Tensor
	for _, p := range l.Pairs {
		if p.Rank <= 0 || len(p.A) != p.NIn*p.Rank || len(p.B) != p.Rank*p.NOut {
			return fmt.Errorf("%s: %s: A has %d values and B %d, but shapes [%d, %d] and [%d, %d] need %d and %d",
				path, p.Base, len(p.A), len(p.B), p.NIn, p.Rank, p.Rank, p.NOut, p.NIn*p.Rank, p.Rank*p.NOut)
		}
		a := gguf.Tensor{Name: p.Base + ".lora_a", Dims: []uint64{uint64(p.NIn), uint64(p.Rank)}, Type: gguf.F32, Data: gguf.F32Data(p.A)}
		if p.Embedding() {
			a.Dims, a.Data = []uint64{uint64(p.Rank), uint64(p.NIn)}, gguf.F32Data(Transpose(p.A, p.NIn, p.Rank))
		}
		tensors = append(tensors, a,
			gguf.Tensor{Name: p.Base + ".lora_b", Dims: []uint64{uint64(p.Rank), uint64(p.NOut)}, Type: gguf.F32, Data: gguf.F32Data(p.B)})
	}
	// The digest of the tensor data lets every reader tell a corrupt file
	// (a flipped byte the header's checks cannot see) from a good one.
	return gguf.Write(path, gguf.WithTensorDigest(kv, tensors), tensors)
}

// Read reads an adapter written in llama.cpp's GGUF LoRA format with F32
// tensors.
func Read(path string) (*LoRA, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	if t, _ := f.String("general.type"); t != "adapter" {
		return nil, fmt.Errorf("%s: not an adapter (general.type is %q, expected \"adapter\")", path, t)
	}
	if t, _ := f.String("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("%s: not a LoRA adapter (adapter.type is %q)", path, t)
	}
	alpha, ok := f.Get("adapter.lora.alpha")
	a32, isF32 := alpha.(float32)
	if !ok || !isF32 {
		return nil, fmt.Errorf("%s: adapter.lora.alpha must be a float32 (llama.cpp's runner aborts on other types)", path)
	}
	if err := f.CheckTensorData(); err != nil {
		return nil, err
	}
	l := &LoRA{Architecture: f.Architecture(), Alpha: a32}
	for _, kv := range f.KV {
		switch kv.Key {
		case "general.architecture", "general.type", "adapter.type", "adapter.lora.alpha", "general.alignment", gguf.TensorDataKey:
		default:
			l.Meta = append(l.Meta, kv)
		}
	}
	byBase := map[string]*Pair{}
	for _, t := range f.Tensors {
		base, isA := strings.CutSuffix(t.Name, ".lora_a")
		if !isA {
			var isB bool
			if base, isB = strings.CutSuffix(t.Name, ".lora_b"); !isB {
				return nil, fmt.Errorf("%s: tensor %q is neither .lora_a nor .lora_b", path, t.Name)
			}
		}
		if t.Type != gguf.F32 || len(t.Dims) != 2 {
			return nil, fmt.Errorf("%s: %s is %s with %d dims; finetune reads 2-D F32 LoRA tensors", path, t.Name, t.Type, len(t.Dims))
		}
		data, err := f.ReadTensorData(t.Name)
		if err != nil {
			return nil, err
		}
		p := byBase[base]
		if p == nil {
			p = &Pair{Base: base}
			byBase[base] = p
		}
		if isA {
			p.NIn, p.Rank, p.A = int(t.Dims[0]), int(t.Dims[1]), gguf.F32Values(data)
			if p.Embedding() {
				p.Rank, p.NIn = p.NIn, p.Rank
				p.A = Transpose(p.A, p.Rank, p.NIn)
			}
		} else {
			p.NOut, p.B = int(t.Dims[1]), gguf.F32Values(data)
			if p.Rank == 0 {
				p.Rank = int(t.Dims[0])
			}
		}
	}
	for _, p := range byBase {
		if p.A == nil || p.B == nil {
			return nil, fmt.Errorf("%s: %s has only one of lora_a and lora_b", path, p.Base)
		}
		if len(p.B) != p.Rank*p.NOut {
			return nil, fmt.Errorf("%s: %s: lora_a has rank %d but lora_b does not", path, p.Base, p.Rank)
		}
		l.Pairs = append(l.Pairs, *p)
	}
	sort.Slice(l.Pairs, func(i, j int) bool { return l.Pairs[i].Base < l.Pairs[j].Base })
	return l, nil
}

// EmbeddingWeight is the base tensor of the token embedding.
const EmbeddingWeight = "token_embd.weight"

// Embedding reports whether p updates the token embedding.
func (p *Pair) Embedding() bool { return p.Base == EmbeddingWeight }

// Transpose returns the matrix m of rows rows of cols values as cols rows
// of rows values.
func Transpose(m []float32, cols, rows int) []float32 {
	out := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = m[r*cols+c]
		}
	}
	return out
}

// BaseDims is the ggml shape of the base weight p adapts: [NIn, NOut], or
// [NOut, NIn] for the token embedding (one row per token).
func (p *Pair) BaseDims() [2]int {
	if p.Embedding() {
		return [2]int{p.NOut, p.NIn}
	}
	return [2]int{p.NIn, p.NOut}
}

// BaseWeight is the base tensor an adapter's pair for name adapts: the
// token embedding for "output.weight" when the base ties its head to it.
func BaseWeight(base *gguf.File, name string) (gguf.TensorInfo, bool) {
	w, ok := base.Tensor(name)
	if !ok && name == "output.weight" {
		return base.Tensor(EmbeddingWeight)
	}
	return w, ok
}

// Tied reports whether base has no output head of its own (its head is the
// token embedding).
func Tied(base *gguf.File) bool {
	_, ok := base.Tensor("output.weight")
	return !ok
}
