package lora

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestCheckpointedEqualsWholeWindow: on stories260K, packed SFT windows
// (prompt tokens masked) with dropout, the whole-window graph with its
// head over the target rows only, and the checkpointed path (layers
// recomputed, the head over target rows in chunks smaller than the
// window's targets; and with each layer's backward split into graphs for
// its queries, keys and values, its attention one key/value head at a
// time, and the rest), give the loss, gradients and validation loss of
// the whole-window graph with its head over every row.
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
	type mode struct {
		name              string
		checkpoint, every bool
		built             graphKind
		split             bool
	}
	run := func(m mode) result {
		checkpoint := m.checkpoint
		e, err := newEngine(base, Targets, rank, 2, 0.1, T, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		e.checkpoint, e.allRows, e.forceSplit = checkpoint, m.every, m.split
		if m.split {
			// One key/value head (and its two query heads) per graph.
			old := attentionBudget
			attentionBudget = 1
			defer func() { attentionBudget = old }()
			if e.kvPerGraph() != 1 {
				t.Fatalf("%d key/value heads per attention graph", e.kvPerGraph())
			}
		}
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
		const drops = 0x5eed // every path computes the same masks from it
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
		for _, k := range []graphKind{graphTrain, graphTrainRows, graphHeadTrain} {
			if _, built := e.graphs[k]; built != (k == m.built) {
				t.Fatalf("%s: graph kind %d built: %v", m.name, k, built)
			}
		}
		return r
	}
	whole := run(mode{"every row", false, true, graphTrain, false})
	for _, m := range []mode{{"target rows", false, false, graphTrainRows, false}, {"checkpointed", true, false, graphHeadTrain, false},
		{"checkpointed, attention split by key/value head", true, false, graphHeadTrain, true}} {
		got := run(m)
		if d := math.Abs(whole.loss-got.loss) / whole.loss; d > 1e-5 {
			t.Errorf("%s: loss %.7f, with the head over every row %.7f", m.name, got.loss, whole.loss)
		}
		if d := math.Abs(whole.val-got.val) / whole.val; d > 1e-5 {
			t.Errorf("%s: validation loss %.7f, with the head over every row %.7f", m.name, got.val, whole.val)
		}
		worst := 0.0
		for i := range whole.gA {
			for _, pair := range [][2][]float32{{whole.gA[i], got.gA[i]}, {whole.gB[i], got.gB[i]}} {
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
		t.Logf("%s: loss %.9f (every row %.9f), validation %.9f (%.9f); worst gradient difference %.2e of its norm",
			m.name, got.loss, whole.loss, got.val, whole.val, worst)
		if worst > 1e-5 {
			t.Errorf("%s: gradients differ by up to %.2e of their norm", m.name, worst)
		}
	}
}
