package lora

import (
	"fmt"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// CheckBase checks, without mapping any weights, that the file at path is
// a Llama model the engine can train.
func CheckBase(path string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	if f.Architecture() != "llama" {
		return fmt.Errorf("%s: architecture %q: finetune trains llama models", path, f.Architecture())
	}
	if err := modelinfo.CheckLlama(f); err != nil {
		return err
	}
	for _, t := range f.Tensors {
		if !trainableTypes[t.Type] {
			return fmt.Errorf("%s: tensor %s is %s; training supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K base weights", path, t.Name, t.Type)
		}
	}
	return nil
}

// EstimateMemory is the memory, in bytes, a training run of the model at
// path needs at context ctxLen: the mapped weights, their transposed
// copies, the activations the backward pass keeps, the logits and labels,
// and the LoRA tensors with their optimizer state. It is an estimate
// (0.9x to 1.25x the peak RSS measured on the benchmark shapes), used
// to refuse runs that cannot fit.
func EstimateMemory(path string, ctxLen, rank, targets int) (int64, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return 0, err
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		return 0, err
	}
	var weights, transposed, loraVals int64
	for _, t := range f.Tensors {
		weights += int64(t.Size())
		if len(t.Dims) == 2 && t.Name != "token_embd.weight" {
			switch t.Type {
			case gguf.F32, gguf.F16, gguf.BF16:
				transposed += int64(t.Size())
			default:
				transposed += int64(t.NumElements()) * 34 / 32 // Q8_0
			}
			loraVals += int64(rank) * int64(t.Dims[0]+t.Dims[1])
		}
	}
	if _, ok := f.Tensor("output.weight"); !ok {
		transposed += int64(h.Embedding) * int64(h.VocabSize) * 34 / 32
	}
	loraVals = loraVals * int64(targets) / 7
	T, E, FF, V := int64(ctxLen), int64(h.Embedding), int64(h.FeedForward), int64(h.VocabSize)
	kv := int64(h.KVHeads * h.HeadDim)
	perLayer := T*(12*E+4*FF+3*kv) + 2*T*T*int64(h.Heads)
	acts := 4 * (int64(h.Layers)*perLayer + 5*T*V)
	optimizer := 4 * 4 * loraVals // values, gradients, two moments
	return weights + transposed + acts + optimizer + 64<<20, nil
}
