package lora

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestCheckpointedEqualsWholeWindow: on stories260K, packed SFT windows
// (prompt tokens masked) with dropout, the checkpointed path (layers
// recomputed, the head over target rows only, in chunks smaller than the
// window's targets) gives the whole-window graph's loss and gradients, and
// the same validation loss.
func TestCheckpointedEqualsWholeWindow(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	const T, rank = 128, 4
	windows := pack(qaExamples(t, model), T)
	if len(windows) < 2 {
		t.Fatalf("%d windows", len(windows))
	}
	base, err := OpenBase(model)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	type result struct {
		loss, val float64
		gA, gB    [][]float32
	}
	run := func(checkpoint bool) result {
		e, err := newEngine(base, Targets, rank, 2, 0.1, T, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		e.checkpoint = checkpoint
		if checkpoint {
			if err := e.initSegments(); err != nil {
				t.Fatal(err)
			}
			e.seg.chunk = 8 // several chunks per window
		}
		p := initParams(e, rank, 8, 2, 3)
		rng := rand.New(rand.NewPCG(2, 2))
		for i := range p.Pairs {
			for j := range p.Pairs[i].B {
				p.Pairs[i].B[j] = float32(rng.NormFloat64() * 0.05)
			}
		}
		e.setParams(p)
		drops := make([][]float32, len(e.pairs))
		for i, pt := range e.pairs {
			drops[i] = make([]float32, pt.nIn*T)
			for j := range drops[i] {
				if rng.Float64() >= 0.1 {
					drops[i][j] = 1 / 0.9
				}
			}
		}
		var r result
		r.gA, r.gB = zeroGrads(e)
		n := 0
		for i := range windows[:2] {
			n += windows[i].Targets()
		}
		var in inputs
		for i := range windows[:2] {
			e.prepare(&windows[i], &in, true)
			if in.targets == 0 || in.targets == T-1 {
				t.Fatalf("window %d has %d targets of %d rows: the test needs masked prompts", i, in.targets, T)
			}
			l, err := e.trainWindow(&in, n, drops, r.gA, r.gB)
			if err != nil {
				t.Fatal(err)
			}
			r.loss += l * float64(in.targets) / float64(n)
		}
		e.prepare(&windows[2%len(windows)], &in, true)
		if r.val, err = e.lossWindow(&in); err != nil {
			t.Fatal(err)
		}
		_, wholeGraph := e.graphs[graphTrain]
		_, headGraph := e.graphs[graphHeadTrain]
		if wholeGraph == checkpoint || headGraph != checkpoint {
			t.Fatalf("checkpoint %v: whole-window graph built %v, head graph built %v", checkpoint, wholeGraph, headGraph)
		}
		return r
	}
	whole, ckpt := run(false), run(true)
	if d := math.Abs(whole.loss-ckpt.loss) / whole.loss; d > 1e-5 {
		t.Errorf("loss: whole window %.7f, checkpointed %.7f", whole.loss, ckpt.loss)
	}
	if d := math.Abs(whole.val-ckpt.val) / whole.val; d > 1e-5 {
		t.Errorf("validation loss: whole window %.7f, checkpointed %.7f", whole.val, ckpt.val)
	}
	worst := 0.0
	for i := range whole.gA {
		for _, pair := range [][2][]float32{{whole.gA[i], ckpt.gA[i]}, {whole.gB[i], ckpt.gB[i]}} {
			norm, diff := 0.0, 0.0
			for j := range pair[0] {
				norm += float64(pair[0][j]) * float64(pair[0][j])
				d := float64(pair[0][j] - pair[1][j])
				diff += d * d
			}
			if norm == 0 {
				t.Fatalf("pair %d has a zero gradient", i)
			}
			worst = max(worst, math.Sqrt(diff/norm))
		}
	}
	t.Logf("loss %.9f / %.9f, validation %.9f / %.9f; worst gradient difference %.2e of its norm", whole.loss, ckpt.loss, whole.val, ckpt.val, worst)
	if worst > 1e-4 {
		t.Errorf("gradients differ by up to %.2e of their norm", worst)
	}
}
