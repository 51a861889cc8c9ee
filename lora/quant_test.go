package lora

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// quantGrads are the LoRA gradients of one window of SmolLM2 at a fixed
// adapter, on the model file at path with transposed copies of type
// copyType and quantized weights cast to fwType for their products
// (autoType: multiplied as they are).
func quantGrads(t *testing.T, path string, copyType, fwType ggml.Type) []float32 {
	t.Helper()
	const T, rank = 128, 8
	base, e := openEngine(t, path, Targets, rank, T)
	e.copyType, e.fwType = copyType, fwType
	p := initParams(e, rank, 16, 2, 3)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range p.Pairs {
		for j := range p.Pairs[i].B {
			p.Pairs[i].B[j] = float32(rng.NormFloat64() * 0.02)
		}
	}
	e.setParams(p)
	w := singleWindow(randomTokens(rng, T, base.Hyper.VocabSize))
	for i := range w.Weights[:T/2] {
		w.Weights[i] = 0 // a prompt, then the answer
	}
	var in inputs
	e.prepare(w, &in, true)
	gA, gB := zeroGrads(e)
	if _, err := e.trainWindow(&in, in.targets, 0, gA, gB); err != nil {
		t.Fatal(err)
	}
	var all []float32
	for i := range gA {
		all = append(append(all, gA[i]...), gB[i]...)
	}
	return all
}

// relDiff is |a-b| / |b| (Frobenius).
func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		d += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// TestQuantizedBaseGradient: on SmolLM2's Q4_1 file, the LoRA gradients of
// a window are those of its F32 copy (the same weights dequantized by
// llama.cpp) within quantTol: the layers' products cast the weights to
// F32 in the graph and the input gradients go through F32 copies. It logs
// the distance for each type of copy (Q8_0 copies, as before, rounded the
// tiny output gradients through F16 block scales: 2.1 relative).
func TestQuantizedBaseGradient(t *testing.T) {
	q41 := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	f32 := filepath.Join(t.TempDir(), "f32.gguf")
	if err := llama.Quantize(q41, f32, llama.FileTypeF32, llama.QuantizeOptions{Threads: 2}); err != nil {
		t.Fatal(err)
	}
	ref := quantGrads(t, f32, ggml.TypeF32, ggml.TypeF32)
	for _, c := range []struct {
		name string
		typ  ggml.Type
	}{{"F32 copies", ggml.TypeF32}, {"BF16 copies", ggml.TypeBF16}, {"F16 copies", ggml.TypeF16}, {"Q8_0 copies", ggml.TypeQ8_0}} {
		t.Logf("Q4_1, %s: gradient %.2e from the F32 copy's", c.name, relDiff(quantGrads(t, q41, c.typ, ggml.TypeF32), ref))
	}
	t.Logf("Q4_1 multiplied as it is (8-bit inputs), F32 copies: gradient %.2e from the F32 copy's", relDiff(quantGrads(t, q41, ggml.TypeF32, autoType), ref))
	if d := relDiff(quantGrads(t, q41, ggml.TypeF32, ggml.TypeF32), ref); d > quantTol {
		t.Errorf("Q4_1 with the engine's copies: gradient %.2e from the F32 copy's (bound %.0e)", d, quantTol)
	}
}

const quantTol = 1e-2

// TestBF16TracksF32 trains SmolLM2's Q4_1 file 10 steps with
// train.precision bf16 (BF16 weight casts and transposed copies: the
// products' inputs rounded to BF16, sums in F32) and with f32, from the
// same start on the same windows: the losses and the adapters must agree
// within bf16LossTol and bf16AdapterTol (relative; the adapter by the
// Frobenius norm of the difference over all tensors).
func TestBF16TracksF32(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	const T = 128
	rng := rand.New(rand.NewPCG(8, 8))
	var ws []Window
	for i := 0; i < 4; i++ {
		w := singleWindow(randomTokens(rng, T, 49152))
		for j := range w.Weights[:T/3] {
			w.Weights[j] = 0
		}
		ws = append(ws, *w)
	}
	run := func(precision string) ([]float64, []float32) {
		dir := t.TempDir()
		var losses []float64
		res, err := Train(context.Background(), model, Config{Rank: 8, Alpha: 16, LearningRate: 2e-3, MaxSteps: 10, Seed: 4, Threads: 2,
			Precision: precision, Checkpointing: "off", Files: filesIn(dir)}, Data{Train: ws}, func(m Metrics) { losses = append(losses, m.Loss) })
		if err != nil {
			t.Fatal(err)
		}
		a, err := adapters.Read(res.Adapter)
		if err != nil {
			t.Fatal(err)
		}
		var all []float32
		for _, p := range a.Pairs {
			all = append(append(all, p.A...), p.B...)
		}
		return losses, all
	}
	lf, af := run("f32")
	lb, ab := run("bf16")
	worst := 0.0
	for i := range lf {
		worst = math.Max(worst, math.Abs(lb[i]-lf[i])/lf[i])
	}
	d := relDiff(ab, af)
	t.Logf("bf16 against f32 over 10 steps: losses within %.1e relative (%.4f and %.4f at the end), adapter %.1e apart", worst, lb[len(lb)-1], lf[len(lf)-1], d)
	if worst > bf16LossTol || d > bf16AdapterTol {
		t.Errorf("bf16 drifted from f32: losses %.1e apart (bound %.0e), adapter %.1e (bound %.0e)", worst, bf16LossTol, d, bf16AdapterTol)
	}
}

const (
	bf16LossTol    = 1e-2
	bf16AdapterTol = 5e-2
)
