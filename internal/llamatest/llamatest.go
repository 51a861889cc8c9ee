// Package llamatest holds test fixtures that go through the bundled
// llama.cpp: a tiny ChatML model, and the logits llama.cpp computes for a
// model with an adapter, the reference the LoRA engine and merged models
// are checked against.
package llamatest

import (
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// ChatMLModel writes a tiny ChatML model (one layer, testmodel's ChatML
// vocabulary and llama.cpp's chatml template) into a fresh t.TempDir() and
// returns its path.
func ChatMLModel(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chat.gguf")
	if err := testmodel.Write(p, testmodel.Config{Layers: 1, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, ChatML: true, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return p
}

// Logits decodes tokens at positions 0, 1, ... in one batch with
// llama.cpp's own llama_decode, on one thread with an F32 KV cache of
// len(tokens) cells, the adapter (a GGUF LoRA, or "" for none) applied at
// scale 1, and returns the logits of every position.
func Logits(t testing.TB, model, adapter string, tokens []int32) [][]float32 {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: len(tokens), Batch: len(tokens), Threads: 1, F32Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if adapter != "" {
		a, err := llama.LoadAdapter(m, adapter)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if err := ctx.SetAdapter(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	batch := make([]llama.BatchToken, len(tokens))
	for i, tok := range tokens {
		batch[i] = llama.BatchToken{Token: tok, Pos: i, Logits: true}
	}
	if err := ctx.Decode(batch); err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(tokens))
	for i := range tokens {
		out[i] = append([]float32(nil), ctx.Logits(i)...)
	}
	return out
}
