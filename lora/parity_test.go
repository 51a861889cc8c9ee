package lora

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/llamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// singleWindow is one example of the given tokens filling the window.
func singleWindow(tokens []int32) *Window {
	w := &Window{Tokens: tokens, Weights: make([]float32, len(tokens)), Pos: make([]int32, len(tokens)), Seq: make([]int32, len(tokens))}
	for i := range tokens {
		w.Pos[i] = int32(i)
		w.Weights[i] = 1
	}
	return w
}

func randomTokens(rng *rand.Rand, n, vocab int) []int32 {
	t := make([]int32, n)
	t[0] = 1
	for i := 1; i < n; i++ {
		t[i] = int32(3 + rng.IntN(vocab-3))
	}
	return t
}

// engineLogits runs the engine's forward pass and returns the logits of
// every position ([T][V]).
func engineLogits(t *testing.T, e *engine, w *Window, withLoRA bool) [][]float32 {
	t.Helper()
	kind := graphLogits
	if !withLoRA {
		kind = graphLogitsP
	}
	gr, err := e.use(kind)
	if err != nil {
		t.Fatal(err)
	}
	var in inputs
	e.prepare(w, &in, false)
	if err := e.run(gr, &in, 0, 0); err != nil {
		t.Fatal(err)
	}
	flat := gr.logits.GetF32(nil)
	V := e.base.Hyper.VocabSize
	out := make([][]float32, len(w.Tokens))
	for i := range out {
		out[i] = flat[i*V : (i+1)*V]
	}
	return out
}

func maxAbsDiff(a, b [][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

func openEngine(t *testing.T, model string, targets []string, rank, ctxLen int) (*Base, *engine) {
	t.Helper()
	base, err := OpenBase(model)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.Close)
	e, err := newEngine(base, targets, rank, 2, 0, ctxLen, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	return base, e
}

// TestForwardParity compares the engine's logits with llama.cpp's for the
// same 64 tokens.
func TestForwardParity(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, model string
		tol         float64
	}{
		{"stories260K F32", shared.Path(t, "models/stories260K.gguf"), 1e-3},
	}
	for _, typ := range []string{"f16", "q8_0"} {
		p := filepath.Join(dir, typ+".gguf")
		if err := testmodel.Write(p, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: typ, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name, model string
			tol         float64
		}{"testmodel " + typ, p, 1e-2})
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, e := openEngine(t, c.model, Targets, 4, 64)
			tokens := randomTokens(rng, 64, base.Hyper.VocabSize)
			got := engineLogits(t, e, singleWindow(tokens), false)
			want := llamatest.Logits(t, c.model, "", tokens)
			if d := maxAbsDiff(got, want); d > c.tol {
				t.Fatalf("max |engine - llama.cpp| = %g over 64×%d logits, want <= %g", d, base.Hyper.VocabSize, c.tol)
			} else {
				t.Logf("max abs logit diff %.2e", d)
			}
		})
	}
}

// TestAdapterParity applies a random non-zero adapter in the engine and, saved
// as GGUF, in llama.cpp: on the seven projections, and on the output head
// and the token embedding (alone and with the projections).
func TestAdapterParity(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	for _, c := range []struct {
		name    string
		targets []string
	}{{"projections", Targets}, {"output and token_embd", ModelTargets}, {"all nine", append(slices.Clone(Targets), ModelTargets...)}} {
		t.Run(c.name, func(t *testing.T) { adapterParity(t, model, c.targets) })
	}
}

// randomParams are rank-4 LoRA values with B drawn from rng (and the
// embedding's A, which starts at zero), set in e: an adapter that moves
// the logits.
func randomParams(e *engine, rng *rand.Rand) *Params {
	p := initParams(e, 4, 8, 2, 7)
	for i := range p.Pairs {
		for j := range p.Pairs[i].B {
			p.Pairs[i].B[j] = float32(rng.NormFloat64() * 0.05)
		}
		if p.Pairs[i].Target == TargetEmbed {
			for j := range p.Pairs[i].A {
				p.Pairs[i].A[j] = float32(rng.NormFloat64())
			}
		}
	}
	e.setParams(p)
	return p
}

func adapterParity(t *testing.T, model string, targets []string) {
	base, e := openEngine(t, model, targets, 4, 64)
	rng := rand.New(rand.NewPCG(2, 2))
	p := randomParams(e, rng)
	path := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := adapters.Write(path, p.Adapter()); err != nil {
		t.Fatal(err)
	}
	tokens := randomTokens(rng, 64, base.Hyper.VocabSize)
	w := singleWindow(tokens)
	got := engineLogits(t, e, w, true)
	want := llamatest.Logits(t, model, path, tokens)
	plain := engineLogits(t, e, w, false)
	if d := maxAbsDiff(got, plain); d < 0.05 {
		t.Fatalf("the adapter moves the logits by only %g: the test would prove nothing", d)
	}
	if d := maxAbsDiff(got, want); d > 1e-3 {
		t.Fatalf("max |engine - llama.cpp| with the adapter = %g, want <= 1e-3", d)
	} else {
		t.Logf("max abs logit diff with adapter %.2e (adapter moves logits by %.2f)", d, maxAbsDiff(got, plain))
	}
}

// TestTiedHeadAdapterParity: on a base whose output head is its token
// embedding, an adapter of the head and the embedding changes each alone
// (as PEFT's lm_head and embed_tokens LoRA do). llama.cpp runs it on the
// base untied (llama.BaseFor), and the merged model, which gets a head of
// its own, gives the same logits.
func TestTiedHeadAdapterParity(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", dir) // where BaseFor writes the untied base
	model := filepath.Join(dir, "tied.gguf")
	if err := testmodel.Write(model, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: "f32", Seed: 5, TiedOutput: true}); err != nil {
		t.Fatal(err)
	}
	for _, targets := range [][]string{{TargetOutput}, {TargetEmbed}, append(slices.Clone(Targets), ModelTargets...)} {
		t.Run(strings.Join(targets, ","), func(t *testing.T) {
			base, e := openEngine(t, model, targets, 4, 64)
			if !base.Tied() {
				t.Fatal("the test model has a head of its own")
			}
			rng := rand.New(rand.NewPCG(3, 3))
			p := randomParams(e, rng)
			path := filepath.Join(t.TempDir(), "adapter.gguf")
			if err := adapters.Write(path, p.Adapter()); err != nil {
				t.Fatal(err)
			}
			tokens := randomTokens(rng, 64, base.Hyper.VocabSize)
			w := singleWindow(tokens)
			got, plain := engineLogits(t, e, w, true), engineLogits(t, e, w, false)
			if d := maxAbsDiff(got, plain); d < 0.05 {
				t.Fatalf("the adapter moves the logits by only %g", d)
			}
			untied, err := llama.BaseFor(model, []string{path})
			if err != nil {
				t.Fatal(err)
			}
			if untied == model {
				t.Fatal("BaseFor kept the tied base")
			}
			if d := maxAbsDiff(got, llamatest.Logits(t, untied, path, tokens)); d > 1e-3 {
				t.Fatalf("max |engine - llama.cpp on the untied base| = %g, want <= 1e-3", d)
			}
			if d := maxAbsDiff(plain, llamatest.Logits(t, untied, "", tokens)); d > 1e-3 {
				t.Fatalf("the untied base alone differs from the tied one by %g", d)
			}
			merged := filepath.Join(t.TempDir(), "merged.gguf")
			if _, err := adapters.Merge(model, path, merged, adapters.MergeOptions{Type: "f32"}); err != nil {
				t.Fatal(err)
			}
			d := maxAbsDiff(got, llamatest.Logits(t, merged, "", tokens))
			if d > 1e-3 {
				t.Fatalf("max |engine - merged model| = %g, want <= 1e-3", d)
			}
			t.Logf("engine = llama.cpp on the untied base; = merged within %.1e (adapter moves logits by %.2f)", d, maxAbsDiff(got, plain))
		})
	}
}
