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

// Memory is what a training run needs, in bytes, on each path.
type Memory struct {
	// WholeWindow keeps every layer's activations for the backward pass.
	WholeWindow int64
	// Checkpointed keeps each layer's input only and recomputes the layer
	// in the backward pass; the output head runs over chunks of rows.
	Checkpointed int64
}

// Choose says whether a run whose Config.Checkpointing is mode
// checkpoints, on a machine with avail bytes available (0: unknown), and
// the memory it then needs. "auto" checkpoints when the whole-window graph
// would take more than a third of what is available.
func (m Memory) Choose(mode string, avail int64) (checkpoint bool, need int64) {
	switch mode {
	case "on":
		return true, m.Checkpointed
	case "off":
		return false, m.WholeWindow
	}
	if avail > 0 && m.WholeWindow > avail/3 {
		return true, m.Checkpointed
	}
	return false, m.WholeWindow
}

// EstimateMemory is the memory a training run of the model at path needs
// at context ctxLen on both paths: the mapped weights, their transposed
// copies, the activations the backward pass keeps, the logits and labels,
// and the LoRA tensors with their optimizer state. It is an estimate,
// used to choose the path and to refuse runs that cannot fit.
func EstimateMemory(path string, ctxLen, rank int, targets []string) (Memory, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Memory{}, err
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		return Memory{}, err
	}
	var weights, transposed, headT, loraVals int64
	size := func(t gguf.TensorInfo) int64 { // of its transposed copy
		switch t.Type {
		case gguf.F32, gguf.F16, gguf.BF16:
			return int64(t.Size())
		}
		return int64(t.NumElements()) * 34 / 32 // Q8_0
	}
	for _, t := range f.Tensors {
		weights += int64(t.Size())
		if len(t.Dims) == 2 && t.Name != "token_embd.weight" {
			if t.Name == "output.weight" {
				headT = size(t)
			}
			transposed += size(t)
			loraVals += int64(rank) * int64(t.Dims[0]+t.Dims[1])
		}
	}
	if _, ok := f.Tensor("output.weight"); !ok {
		headT = int64(h.Embedding) * int64(h.VocabSize) * 34 / 32
		transposed += headT
	}
	loraVals = loraVals * int64(len(targets)) / 7
	T, E, FF, V, L := int64(ctxLen), int64(h.Embedding), int64(h.FeedForward), int64(h.VocabSize), int64(h.Layers)
	H, kv := int64(h.Heads), int64(h.KVHeads*h.HeadDim)
	perLayer := T*(12*E+4*FF+3*kv) + 2*T*T*H // floats the backward pass keeps
	optimizer := 4 * 4 * loraVals            // values, gradients, two moments
	fixed := weights + optimizer + 64<<20
	C := int64(headChunk(h.VocabSize, ctxLen))
	// One layer's graph with its backward pass (measured on the Llama-3.2-1B
	// shape at contexts 1024 and 2048: three T²·heads tensors and the
	// feed-forward activations), and the layer's weights transposed in it.
	layer := 4*(3*T*T*H+4*T*FF) + 2*(transposed-headT)/L
	if per := int64(kvPerGraph(h, ctxLen, false)); per > 0 {
		// Split: the largest of its graphs (a few heads' attention, or the
		// feed-forward block), and the heads' values and gradients on the
		// host.
		attn := 4 * 3 * T * T * per * H / int64(h.KVHeads)
		layer = max(attn, 4*4*T*FF) + 2*(transposed-headT)/L + 4*T*(4*E+4*kv)
	}
	return Memory{
		WholeWindow: fixed + transposed + 4*(L*perLayer+5*T*V),
		// The layers' inputs, one layer, one chunk of the head, and the
		// gradients of the hidden state on the host.
		Checkpointed: fixed + headT + 4*(L+1)*E*T + layer + 4*5*V*C + 4*3*E*T,
	}, nil
}
