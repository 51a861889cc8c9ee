package adapters

import (
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

func randomPair(rng *rand.Rand, base string, nIn, nOut, r int, scaleB float64) Pair {
	p := Pair{Base: base, NIn: nIn, NOut: nOut, Rank: r, A: make([]float32, nIn*r), B: make([]float32, r*nOut)}
	for i := range p.A {
		p.A[i] = float32(rng.NormFloat64() * 0.3)
	}
	for i := range p.B {
		p.B[i] = float32(rng.NormFloat64() * scaleB)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := &LoRA{Architecture: "llama", Alpha: 16, Pairs: []Pair{
		randomPair(rng, "blk.0.attn_q.weight", 64, 64, 4, 0.1),
		randomPair(rng, "blk.0.ffn_down.weight", 172, 64, 4, 0.1),
	}, Meta: []gguf.KV{{Key: "finetune.run", Value: "test"}}}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := Write(path, l); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	// Read sorts pairs by base name; these were written in that order.
	if !reflect.DeepEqual(got, l) {
		t.Fatalf("round trip differs: got pairs %s, %s", got.Pairs[0].Base, got.Pairs[1].Base)
	}
	bad := &LoRA{Architecture: "llama", Alpha: 1, Pairs: []Pair{{Base: "x", NIn: 2, NOut: 2, Rank: 1, A: []float32{1}, B: []float32{1, 2}}}}
	if err := Write(filepath.Join(t.TempDir(), "b.gguf"), bad); err == nil || !strings.Contains(err.Error(), "x:") {
		t.Fatalf("mis-sized A accepted: %v", err)
	}
}

// TestLlamaAppliesAdapter loads written adapters in llama.cpp: a zero B
// changes nothing, a non-zero B changes the logits, and scale 0 undoes it.
func TestLlamaAppliesAdapter(t *testing.T) {
	base := shared.Path(t, "models/stories260K.gguf")
	m, err := llama.LoadModel(base, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	write := func(name string, scaleB float64) *llama.Adapter {
		l := &LoRA{Architecture: "llama", Alpha: 8}
		for _, w := range []string{"attn_q", "attn_v", "ffn_up"} {
			shape := map[string][2]int{"attn_q": {64, 64}, "attn_v": {64, 32}, "ffn_up": {64, 172}}[w]
			for b := 0; b < 5; b++ {
				l.Pairs = append(l.Pairs, randomPair(rng, "blk."+string(rune('0'+b))+"."+w+".weight", shape[0], shape[1], 4, scaleB))
			}
		}
		path := filepath.Join(dir, name)
		if err := Write(path, l); err != nil {
			t.Fatal(err)
		}
		a, err := llama.LoadAdapter(m, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		if a.Rank != 4 || a.Alpha != 8 {
			t.Fatalf("rank %d alpha %g", a.Rank, a.Alpha)
		}
		return a
	}
	zero, live := write("zero.gguf", 0), write("live.gguf", 0.5)

	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: 32, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	toks, _ := m.Tokenize("Once upon a time", true, false)
	logits := func() []float32 {
		ctx.Reset()
		var batch []llama.BatchToken
		for i, tok := range toks {
			batch = append(batch, llama.BatchToken{Token: tok, Pos: i, Logits: i == len(toks)-1})
		}
		if err := ctx.Decode(batch); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), ctx.Logits(len(toks)-1)...)
	}
	plain := logits()
	if err := ctx.SetAdapter(zero, 1); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(plain, logits()); d != 0 {
		t.Fatalf("a zero-B adapter moved the logits by %g", d)
	}
	if err := ctx.ClearAdapters(); err != nil {
		t.Fatal(err)
	}
	if err := ctx.SetAdapter(live, 1); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(plain, logits()); d < 1e-3 {
		t.Fatalf("a non-zero adapter moved the logits by only %g", d)
	}
	if err := ctx.SetAdapter(live, 0); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(plain, logits()); d > 1e-5 {
		t.Fatalf("scale 0 still moves the logits by %g", d)
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		x := float64(a[i] - b[i])
		if x < 0 {
			x = -x
		}
		d = max(d, x)
	}
	return d
}
