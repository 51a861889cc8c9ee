package adapters

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/llamatest"
	"github.com/finetune-dev/finetune/internal/shared"
)

// logitsOf decodes tokens in llama.cpp (F32 KV cache) and returns the last
// position's logits.
func logitsOf(t *testing.T, model, adapter string, tokens []int32) []float32 {
	t.Helper()
	logits := llamatest.Logits(t, model, adapter, tokens)
	return logits[len(logits)-1]
}

// TestMergeEqualsAdapter: a merged model's logits equal the base's with
// the adapter applied at run time.
func TestMergeEqualsAdapter(t *testing.T) {
	base := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 8))
	l := &LoRA{Architecture: "llama", Alpha: 8}
	for b := 0; b < 5; b++ {
		for _, w := range []struct {
			name      string
			nIn, nOut int
		}{{"attn_q", 64, 64}, {"attn_v", 64, 32}, {"ffn_down", 172, 64}} {
			l.Pairs = append(l.Pairs, randomPair(rng, "blk."+string(rune('0'+b))+"."+w.name+".weight", w.nIn, w.nOut, 4, 0.3))
		}
	}
	adapter := filepath.Join(dir, "a.gguf")
	if err := Write(adapter, l); err != nil {
		t.Fatal(err)
	}
	m, _ := llama.LoadModel(base, llama.ModelOptions{VocabOnly: true})
	tokens, _ := m.Tokenize("Once upon a time there was a dog", true, false)
	m.Close()
	want := logitsOf(t, base, adapter, tokens)
	plain := logitsOf(t, base, "", tokens)
	for _, c := range []struct {
		typ string
		tol float64
	}{{"f32", 1e-3}, {"f16", 1e-1}} { // F16 rounds the weights (and ggml the activations): ~0.3% of a 20-logit effect
		merged := filepath.Join(dir, "merged-"+c.typ+".gguf")
		if err := Merge(base, adapter, merged, c.typ, 1); err != nil {
			t.Fatal(err)
		}
		got := logitsOf(t, merged, "", tokens)
		d, moved := 0.0, 0.0
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
			moved = math.Max(moved, math.Abs(float64(want[i]-plain[i])))
		}
		t.Logf("%s: max |merged - base+adapter| = %.2e (the adapter moves logits by %.2f)", c.typ, d, moved)
		if moved < 0.1 || d > c.tol {
			t.Fatalf("%s: merged logits differ by %g (tolerance %g); adapter effect %g", c.typ, d, c.tol, moved)
		}
	}
	if err := Merge(base, adapter, filepath.Join(dir, "x.gguf"), "q4_k", 1); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Fatalf("bad type: %v", err)
	}
}
