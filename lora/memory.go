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
func EstimateMemory(path string, ctxLen, rank, targets int) (Memory, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Memory{}, err
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		return Memory{}, err
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
	T, E, FF, V, L := int64(ctxLen), int64(h.Embedding), int64(h.FeedForward), int64(h.VocabSize), int64(h.Layers)
	kv := int64(h.KVHeads * h.HeadDim)
	perLayer := T*(12*E+4*FF+3*kv) + 2*T*T*int64(h.Heads) // floats the backward pass keeps
	optimizer := 4 * 4 * loraVals                         // values, gradients, two moments
	fixed := weights + transposed + optimizer + 64<<20
	C := int64(headChunk(h.VocabSize, ctxLen))
	return Memory{
		WholeWindow: fixed + 4*(L*perLayer+5*T*V),
		// The layers' inputs, one layer with its gradients, one chunk of
		// the head, and the host's gradient of the hidden state.
		Checkpointed: fixed + 4*((L+1)*E*T+2*perLayer+5*V*C+4*E*T),
	}, nil
}
