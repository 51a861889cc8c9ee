package lora

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/testmodel"
)

// TestGradientsMatchFiniteDifferences checks the engine's LoRA gradients
// against central finite differences of its own loss, on tiny F32 models
// with and without grouped-query attention, for every target type, on the
// whole-window graph and on the checkpointed path.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, c := range []struct {
		name       string
		heads, kvh int
		checkpoint bool
		split      bool
		precision  string
		tol        float64
	}{{"GQA 4 heads / 2 KV heads", 4, 2, false, false, "f32", 1e-2}, {"MHA 4 heads", 4, 4, false, false, "f32", 1e-2}, {"GQA checkpointed", 4, 2, true, false, "f32", 1e-2},
		{"GQA checkpointed, attention split by key/value head", 4, 2, true, true, "f32", 1e-2},
		// BF16 copies round the weights and the output gradients to 8
		// bits of mantissa on their way back through the frozen weights:
		// a gradient that is a sum of terms that cancel carries their
		// rounding (measured up to 15% on single values), so these cases
		// bound each target's checked gradients together (the norm of
		// the differences over the norm of the finite differences).
		{"GQA, BF16 products", 4, 2, false, false, "bf16", 3e-2}, {"GQA checkpointed, BF16 products", 4, 2, true, false, "bf16", 3e-2}} {
		t.Run(c.name, func(t *testing.T) {
			model := filepath.Join(t.TempDir(), "m.gguf")
			if err := testmodel.Write(model, testmodel.Config{Layers: 2, Embd: 32, Heads: c.heads, KVHeads: c.kvh, FF: 64, Context: 64, Seed: 11}); err != nil {
				t.Fatal(err)
			}
			const T, rank = 16, 4
			all := append(slices.Clone(Targets), ModelTargets...)
			base, e := openEngine(t, model, all, rank, T)
			e.checkpoint, e.forceSplit = c.checkpoint, c.split
			e.setPrecision(c.precision)
			if c.split {
				old := attentionBudget
				attentionBudget = 1
				defer func() { attentionBudget = old }()
			}
			p := initParams(e, rank, 8, 2, 5)
			rng := rand.New(rand.NewPCG(9, 9))
			wide := rand.New(rand.NewPCG(7, 7)) // the model-wide pairs' values
			for i, q := range p.Pairs {
				r := rng
				if !isLayerTarget(q.Target) {
					r = wide
				}
				for j := range q.B {
					q.B[j] = float32(r.NormFloat64() * 0.2)
				}
				if q.Target == TargetEmbed { // A starts at zero, as PEFT's
					for j := range q.A {
						q.A[j] = float32(r.NormFloat64() * 0.2)
					}
				}
				p.Pairs[i] = q
			}
			e.setParams(p)
			w := singleWindow(randomTokens(rng, T, base.Hyper.VocabSize))
			var in inputs
			e.prepare(w, &in, true)

			// Analytic gradients of the mean loss over the targets.
			gradA, gradB := zeroGrads(e)
			if _, err := e.trainWindow(&in, in.targets, 0, gradA, gradB); err != nil {
				t.Fatal(err)
			}
			lossAt := func() float64 {
				e.setParams(p)
				l, err := e.lossWindow(&in)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			const h = 4e-2
			checked := map[string]int{}
			worst := map[string]float64{}
			diff2, fd2 := map[string]float64{}, map[string]float64{}
			for i, pair := range p.Pairs {
				for _, which := range []string{"A", "B"} {
					vals, grads := pair.A, gradA[i]
					if which == "B" {
						vals, grads = pair.B, gradB[i]
					}
					// Finite differences (step 0.02) of a float32 loss near 6
					// carry noise of about 1e-5 in the derivative: only
					// gradients well above that are compared, 13 per matrix.
					for k, tries := 0, 0; k < 13 && tries < 4000; tries++ {
						j := rng.IntN(len(vals))
						if math.Abs(float64(grads[j])) < 5e-3 {
							continue
						}
						k++
						old := vals[j]
						central := func(h float32) float64 {
							vals[j] = old + h
							lp := lossAt()
							vals[j] = old - h
							lm := lossAt()
							vals[j] = old
							return (lp - lm) / (2 * float64(h))
						}
						// Richardson extrapolation of two central differences
						// cancels their h² error.
						fd := (4*central(h/2) - central(h)) / 3
						an := float64(grads[j])
						rel := math.Abs(an-fd) / math.Max(math.Max(math.Abs(an), math.Abs(fd)), 1e-3)
						key := pair.Target
						checked[key]++
						worst[key] = math.Max(worst[key], rel)
						diff2[key] += (an - fd) * (an - fd)
						fd2[key] += fd * fd
						if c.precision == "f32" && rel > c.tol {
							t.Errorf("%s %s[%d]: analytic %.6g, finite difference %.6g (relative error %.3g)", WeightName(pair.Layer, pair.Target), which, j, an, fd, rel)
						}
					}
				}
			}
			e.setParams(p)
			for _, target := range all {
				if want := 50 - 24*btoi(!isLayerTarget(target)); checked[target] < want {
					t.Fatalf("only %d parameters of %s checked", checked[target], target)
				}
				agg := math.Sqrt(diff2[target] / fd2[target])
				t.Logf("%-12s %d parameters, worst relative error %.2e, together %.2e", target, checked[target], worst[target], agg)
				if c.precision == "bf16" && agg > c.tol {
					t.Errorf("%s: gradients %.2e from the finite differences together (bound %.0e)", target, agg, c.tol)
				}
			}
		})
	}
}

// zeroGrads are gradient accumulators for e's pairs.
func zeroGrads(e *engine) (gA, gB [][]float32) {
	for _, p := range e.pairs {
		gA = append(gA, make([]float32, p.a.Elements()))
		gB = append(gB, make([]float32, p.b.Elements()))
	}
	return gA, gB
}
