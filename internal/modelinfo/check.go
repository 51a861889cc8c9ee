package modelinfo

import (
	"fmt"

	"github.com/finetune-dev/finetune/internal/gguf"
)

// CheckLlama verifies, from metadata alone, what llama.cpp would otherwise
// find out by asserting (and killing the process): consistent
// hyper-parameters, a usable vocabulary, and every tensor of a Llama model
// present with the shape the hyper-parameters imply. Errors name the file
// and the key or tensor.
func CheckLlama(f *gguf.File) error {
	h, err := ParseHyper(f)
	if err != nil {
		return err
	}
	p := f.Path
	switch {
	case h.Layers < 1 || h.Layers > 1024:
		return fmt.Errorf("%s: block_count %d is out of range", p, h.Layers)
	case h.Embedding < 1 || h.FeedForward < 1 || h.ContextLength < 1:
		return fmt.Errorf("%s: embedding_length %d, feed_forward_length %d and context_length %d must be positive", p, h.Embedding, h.FeedForward, h.ContextLength)
	case h.HeadDim < 1 || h.RopeDim < 1 || h.RopeDim > h.HeadDim || h.RopeDim%2 != 0:
		return fmt.Errorf("%s: rope dimension %d does not fit the head size %d", p, h.RopeDim, h.HeadDim)
	case h.RMSEpsilon <= 0 || h.RMSEpsilon >= 1:
		return fmt.Errorf("%s: layer_norm_rms_epsilon %g is out of range", p, h.RMSEpsilon)
	}
	if err := checkVocab(f); err != nil {
		return err
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	nVocab := uint64(len(tokens))
	E, FF, hd := uint64(h.Embedding), uint64(h.FeedForward), uint64(h.HeadDim)
	q, kv := uint64(h.Heads)*hd, uint64(h.KVHeads)*hd
	want := map[string][]uint64{
		"token_embd.weight":  {E, nVocab},
		"output_norm.weight": {E},
	}
	optional := map[string][]uint64{
		"output.weight":     {E, nVocab},
		"rope_freqs.weight": {uint64(h.RopeDim / 2)},
	}
	for l := 0; l < h.Layers; l++ {
		b := fmt.Sprintf("blk.%d.", l)
		want[b+"attn_norm.weight"] = []uint64{E}
		want[b+"attn_q.weight"] = []uint64{E, q}
		want[b+"attn_k.weight"] = []uint64{E, kv}
		want[b+"attn_v.weight"] = []uint64{E, kv}
		want[b+"attn_output.weight"] = []uint64{q, E}
		want[b+"ffn_norm.weight"] = []uint64{E}
		want[b+"ffn_gate.weight"] = []uint64{E, FF}
		want[b+"ffn_up.weight"] = []uint64{E, FF}
		want[b+"ffn_down.weight"] = []uint64{FF, E}
		optional[b+"rope_freqs.weight"] = []uint64{uint64(h.RopeDim / 2)}
	}
	for _, t := range f.Tensors {
		shape, ok := want[t.Name]
		if !ok {
			shape, ok = optional[t.Name]
		}
		if !ok {
			continue // llama.cpp reports unused tensors itself
		}
		if !sameShape(t.Dims, shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, but the hyper-parameters imply %v", p, t.Name, t.Dims, shape)
		}
		delete(want, t.Name)
	}
	for l := 0; l < h.Layers; l++ { // report the first missing tensor in file order
		for _, n := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"} {
			name := fmt.Sprintf("blk.%d.%s.weight", l, n)
			if _, missing := want[name]; missing {
				return fmt.Errorf("%s: tensor %s is missing (block_count is %d)", p, name, h.Layers)
			}
		}
	}
	for name := range want {
		return fmt.Errorf("%s: tensor %s is missing", p, name)
	}
	return nil
}

// checkVocab checks the tokenizer arrays llama.cpp indexes without bounds
// checks.
func checkVocab(f *gguf.File) error {
	p := f.Path
	model, ok := f.String("tokenizer.ggml.model")
	if !ok {
		return fmt.Errorf("%s: no tokenizer (tokenizer.ggml.model is missing)", p)
	}
	if _, known := vocabTypes[model]; !known {
		return fmt.Errorf("%s: unknown tokenizer.ggml.model %q", p, model)
	}
	tokens, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(tokens) == 0 {
		return fmt.Errorf("%s: tokenizer.ggml.tokens is missing or not an array of strings", p)
	}
	seen := make(map[string]int, len(tokens))
	for i, tok := range tokens {
		if j, dup := seen[tok]; dup {
			return fmt.Errorf("%s: tokenizer.ggml.tokens has %q twice (ids %d and %d)", p, tok, j, i)
		}
		seen[tok] = i
	}
	for _, key := range []string{"tokenizer.ggml.scores", "tokenizer.ggml.token_type"} {
		v, ok := f.Get(key)
		if !ok {
			continue
		}
		n := -1
		switch a := v.(type) {
		case []float32:
			n = len(a)
		case []int32:
			n = len(a)
		}
		if n != len(tokens) {
			return fmt.Errorf("%s: %s has %d entries for %d tokens (or the wrong type)", p, key, n, len(tokens))
		}
	}
	for _, s := range specialKeys {
		v, ok := f.Get(s.key)
		if !ok {
			continue
		}
		id, isU := v.(uint32)
		if !isU {
			return fmt.Errorf("%s: %s must be a uint32", p, s.key)
		}
		if id != ^uint32(0) && int(id) >= len(tokens) {
			return fmt.Errorf("%s: %s is %d but the vocabulary has %d tokens", p, s.key, id, len(tokens))
		}
	}
	return nil
}

func sameShape(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
