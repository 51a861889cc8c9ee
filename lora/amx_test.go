package lora

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// TestAMXMatchesBF16Products: with train.precision bf16 on a CPU with
// AMX, the products with the frozen weights run on their packed copies;
// on a tiny GQA model with Q8_0 weights (its layers' forward products
// packed too), every target's LoRA gradients and the loss are those of
// ggml's own BF16 products (the same BF16 operands, F32 sums in another
// order), on the whole-window graph and on the checkpointed path (whose
// layers' graphs pack the weights themselves), its backward split by
// key/value head too. The head's forward product is left to ggml here, as
// without AMX (a Q8_0 product, its input rounded to 8 bits: not the same
// arithmetic).
func TestAMXMatchesBF16Products(t *testing.T) {
	if !ggml.AMX() {
		t.Skip("no AMX products here:", ggml.AMXStatus())
	}
	model := filepath.Join(t.TempDir(), "m.gguf")
	if err := testmodel.Write(model, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 96, Context: 64, Seed: 5, Type: "q8_0"}); err != nil {
		t.Fatal(err)
	}
	const T, rank = 24, 4
	all := append(slices.Clone(Targets), ModelTargets...)
	for _, mode := range []struct{ checkpoint, split bool }{{false, false}, {true, false}, {true, true}} {
		checkpoint := mode.checkpoint
		if mode.split {
			old := attentionBudget
			attentionBudget = 1
			defer func() { attentionBudget = old }()
		}
		run := func(amx bool) (float64, float64, [][]float32, [][]float32, *engine) {
			base, e := openEngine(t, model, all, rank, T)
			e.checkpoint, e.forceSplit = checkpoint, mode.split
			e.setPrecision("bf16")
			if !e.amx {
				t.Fatal("bf16 on an AMX CPU does not use AMX products")
			}
			e.amx = amx
			if amx {
				if err := e.packWeights(); err != nil {
					t.Fatal(err)
				}
				delete(e.packF, e.base.output)
			}
			l, in, gA, gB := seededStep(t, e, rank, T, base.Hyper.VocabSize)
			lv, err := e.lossWindow(in)
			if err != nil {
				t.Fatal(err)
			}
			return l, lv, gA, gB, e
		}
		l0, lv0, a0, b0, _ := run(false)
		l1, lv1, a1, b1, e := run(true)
		// Every frozen weight packed for its input gradient; forward, every
		// layer weight of the whole-window graph (the head left out above).
		wantB, wantF := 1, 0
		if !checkpoint {
			wantB, wantF = len(e.frozenMatmulWeights()), len(e.frozenMatmulWeights())-1
		}
		if len(e.packB) != wantB || len(e.packF) != wantF {
			t.Fatalf("%+v: %d weights packed forward, %d backward; want %d and %d", mode, len(e.packF), len(e.packB), wantF, wantB)
		}
		if math.Abs(l1-l0) > 1e-4*l0 || math.Abs(lv1-lv0) > 1e-4*lv0 {
			t.Errorf("%+v: losses %v and %v with AMX, %v and %v without", mode, l1, lv1, l0, lv0)
		}
		worst := 0.0
		for i, p := range e.pairs {
			for _, d := range []float64{relDiff(a1[i], a0[i]), relDiff(b1[i], b0[i])} {
				if math.IsNaN(d) { // a zero gradient (B of the embedding's pair, A zero)
					continue
				}
				worst = max(worst, d)
				if d > 2e-3 {
					t.Errorf("%+v: %s gradient %.2e from ggml's BF16 products'", mode, WeightName(p.layer, p.target), d)
				}
			}
		}
		t.Logf("%+v: losses %.7f / %.7f, gradients within %.1e", mode, l1, l0, worst)
	}
}

// TestResolvePrecision: auto is bf16 for a quantized base where AMX
// products can run, f32 for an F32 base or without AMX; f32 and bf16 are
// kept as given.
func TestResolvePrecision(t *testing.T) {
	dir := t.TempDir()
	bases := map[string]*Base{}
	for _, typ := range []string{"f32", "q8_0"} {
		path := filepath.Join(dir, typ+".gguf")
		if err := testmodel.Write(path, testmodel.Config{Layers: 1, Embd: 32, Heads: 2, KVHeads: 2, FF: 64, Type: typ}); err != nil {
			t.Fatal(err)
		}
		base, err := OpenBase(path)
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		bases[typ] = base
	}
	auto := "f32"
	if ggml.AMX() {
		auto = "bf16"
	}
	for _, c := range []struct{ p, typ, want string }{
		{"", "q8_0", auto}, {"auto", "q8_0", auto}, {"auto", "f32", "f32"},
		{"f32", "q8_0", "f32"}, {"bf16", "f32", "bf16"}, {"bf16", "q8_0", "bf16"},
	} {
		if got := ResolvePrecision(c.p, bases[c.typ]); got != c.want {
			t.Errorf("ResolvePrecision(%q) on a %s base: %q, want %q", c.p, c.typ, got, c.want)
		}
	}
}

// TestAMXActivationProducts: with every product of two activations on
// AMX tiles too (the attention's and the LoRA factors', both operands
// rounded to BF16), the loss and every target's gradients stay close to
// those of the same engine with those products in F32, on the
// whole-window graph and the checkpointed path, its backward split too.
func TestAMXActivationProducts(t *testing.T) {
	if !ggml.AMX() {
		t.Skip("no AMX products here:", ggml.AMXStatus())
	}
	model := filepath.Join(t.TempDir(), "m.gguf")
	if err := testmodel.Write(model, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 96, Context: 64, Seed: 5, Type: "q8_0"}); err != nil {
		t.Fatal(err)
	}
	const T, rank = 24, 4
	all := append(slices.Clone(Targets), ModelTargets...)
	old := amxProductUse
	defer func() { amxProductUse = old }()
	for _, mode := range []struct{ checkpoint, split bool }{{false, false}, {true, false}, {true, true}} {
		if mode.split {
			old := attentionBudget
			attentionBudget = 1
			defer func() { attentionBudget = old }()
		}
		run := func(act bool) (float64, [][]float32, [][]float32, *engine) {
			amxProductUse = func(k, n, m int) bool { return act }
			base, e := openEngine(t, model, all, rank, T)
			e.checkpoint, e.forceSplit = mode.checkpoint, mode.split
			e.setPrecision("bf16")
			if !e.amx {
				t.Fatal("bf16 on an AMX CPU does not use AMX products")
			}
			l, _, gA, gB := seededStep(t, e, rank, T, base.Hyper.VocabSize)
			return l, gA, gB, e
		}
		l0, a0, b0, e0 := run(false)
		l1, a1, b1, e := run(true)
		if e0.amxProducts != 0 || e.amxProducts == 0 {
			t.Fatalf("%+v: %d and %d activation products on AMX", mode, e0.amxProducts, e.amxProducts)
		}
		if math.Abs(l1-l0) > 1e-3*l0 {
			t.Errorf("%+v: loss %v with the activation products on AMX, %v without", mode, l1, l0)
		}
		worst := 0.0
		for i, p := range e.pairs {
			for _, d := range []float64{relDiff(a1[i], a0[i]), relDiff(b1[i], b0[i])} {
				if math.IsNaN(d) {
					continue
				}
				worst = max(worst, d)
				if d > 5e-2 {
					t.Errorf("%+v: %s gradient %.2e from the F32 activation products'", mode, WeightName(p.layer, p.target), d)
				}
			}
		}
		t.Logf("%+v: %d activation products on AMX; losses %.7f / %.7f, gradients within %.1e", mode, e.amxProducts, l1, l0, worst)
	}
}

// seededStep sets e's LoRA to seeded values (B random too) and computes
// one training window of T random tokens: its loss, inputs and gradients.
func seededStep(t *testing.T, e *engine, rank, T, vocab int) (float64, *inputs, [][]float32, [][]float32) {
	t.Helper()
	p := initParams(e, rank, 8, 2, 5)
	rng := rand.New(rand.NewPCG(9, 9))
	for i, q := range p.Pairs {
		for j := range q.B {
			q.B[j] = float32(rng.NormFloat64() * 0.2)
		}
		p.Pairs[i] = q
	}
	e.setParams(p)
	in := &inputs{}
	e.prepare(singleWindow(randomTokens(rng, T, vocab)), in, true)
	gA, gB := zeroGrads(e)
	l, err := e.trainWindow(in, in.targets, 0, gA, gB)
	if err != nil {
		t.Fatal(err)
	}
	return l, in, gA, gB
}
