package lora

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestValidatesOncePerEval: the validation windows are read every
// eval_every steps and at the last step, once each time; the adapter's
// final validation loss is the one measured at the best step, not a second
// pass over the same windows with the same weights.
func TestValidatesOncePerEval(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	data := resumeData(t, model)
	for _, c := range []struct {
		evalEvery, want int
	}{
		{3, 2}, // steps 3 and 6: the last step is a multiple of eval_every
		{4, 2}, // steps 4 and 6
		{0, 1}, // the last step only
	} {
		dir := t.TempDir()
		cfg := Config{Rank: 4, Alpha: 8, LearningRate: 5e-3, MaxSteps: 6, EvalEvery: c.evalEvery, Seed: 3, Threads: 1, Files: filesIn(dir)}
		logged := 0
		res, err := Train(context.Background(), model, cfg, data, func(m Metrics) {
			if m.ValLoss != nil {
				logged++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if logged != c.want || res.ValPasses != c.want {
			t.Errorf("eval_every %d over 6 steps: %d validation losses reported, %d validation passes run; want %d of each", c.evalEvery, logged, res.ValPasses, c.want)
		}
		if res.ValLoss == nil || res.BestValLoss == nil || *res.ValLoss != *res.BestValLoss {
			t.Errorf("eval_every %d: final validation loss %v, best %v: the adapter written is the best", c.evalEvery, res.ValLoss, res.BestValLoss)
		}
		info, err := adapters.ReadInfo(cfg.Files.Adapter)
		if err != nil {
			t.Fatal(err)
		}
		if info.Training.ValPasses != c.want {
			t.Errorf("eval_every %d: adapter.json says %d validation passes, want %d", c.evalEvery, info.Training.ValPasses, c.want)
		}
	}
}

// TestWallTimeCoversValidation: the run's wall time is the whole of
// Train, validation passes and checkpoints included, with the time of the
// optimizer steps and of the validation passes beside it. The validation
// windows here are many and the steps few, so a wall time that left the
// passes out would be a fraction of the time Train took.
func TestWallTimeCoversValidation(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	data := resumeData(t, model)
	var val []Window
	for len(val) < 40 {
		val = append(val, data.Val...)
	}
	data.Val = val
	dir := t.TempDir()
	cfg := Config{Rank: 4, Alpha: 8, LearningRate: 5e-3, MaxSteps: 2, Seed: 3, Threads: 1, Files: filesIn(dir)}
	start := time.Now()
	var last Metrics
	res, err := Train(context.Background(), model, cfg, data, func(m Metrics) { last = m })
	took := time.Since(start).Seconds()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Train took %.3f s: wall %.3f s, steps %.3f s, validation %.3f s (%d passes)", took, res.WallSeconds, res.StepsSeconds, res.ValSeconds, res.ValPasses)
	switch {
	case res.ValPasses != 1 || res.ValSeconds <= 0 || res.StepsSeconds <= 0:
		t.Fatalf("%d validation passes of %.3f s, steps %.3f s: want one pass, both timed", res.ValPasses, res.ValSeconds, res.StepsSeconds)
	case res.WallSeconds < res.StepsSeconds+res.ValSeconds:
		t.Fatalf("wall %.3f s is less than the steps (%.3f s) and validation (%.3f s) it holds", res.WallSeconds, res.StepsSeconds, res.ValSeconds)
	case res.WallSeconds > took || res.WallSeconds < 0.9*took:
		t.Fatalf("wall %.3f s, but Train took %.3f s", res.WallSeconds, took)
	case res.WallTime.Seconds() != res.WallSeconds:
		t.Fatalf("WallTime %v, WallSeconds %g", res.WallTime, res.WallSeconds)
	case last.ValSec <= 0 || last.ValSec > res.ValSeconds || last.ElapsedSec > res.WallSeconds || last.ElapsedSec < res.StepsSeconds+res.ValSeconds:
		t.Fatalf("last step's metrics: val_s %g, elapsed_s %g; the run: validation %g s, steps %g s, wall %g s", last.ValSec, last.ElapsedSec, res.ValSeconds, res.StepsSeconds, res.WallSeconds)
	}
	info, err := adapters.ReadInfo(cfg.Files.Adapter)
	if err != nil {
		t.Fatal(err)
	}
	if tr := info.Training; tr.WallSeconds != res.WallSeconds || tr.StepsSeconds != res.StepsSeconds || tr.ValSeconds != res.ValSeconds {
		t.Fatalf("adapter.json: wall %g, steps %g, validation %g; the run: %g, %g, %g", tr.WallSeconds, tr.StepsSeconds, tr.ValSeconds, res.WallSeconds, res.StepsSeconds, res.ValSeconds)
	}
}

// TestValSample: a pass reads at most the windows asked for, chosen among
// those that hold targets, the same ones for the same seed; every one of
// them when asked for 0 or at least as many as there are.
func TestValSample(t *testing.T) {
	windows := func(n int, empty ...int) []Window {
		ws := make([]Window, n)
		for i := range ws {
			ws[i] = Window{Tokens: make([]int32, 4), Weights: []float32{0, 1, 1, 1}, Pos: []int32{0, 1, 2, 3}, Seq: make([]int32, 4)}
		}
		for _, i := range empty {
			ws[i].Weights = make([]float32, 4)
		}
		return ws
	}
	val := windows(410)
	a, of := valSample(val, 32, 7)
	b, _ := valSample(val, 32, 7)
	c, _ := valSample(val, 32, 8)
	if len(a) != 32 || of != 410 {
		t.Fatalf("32 of 410 windows: got %d of %d", len(a), of)
	}
	if !slices.Equal(a, b) {
		t.Fatalf("the same seed chose %v and %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 chose the same windows %v", a)
	}
	for i, x := range a {
		if x < 0 || x >= 410 || i > 0 && x <= a[i-1] {
			t.Fatalf("not distinct windows in ascending order: %v", a)
		}
	}
	for _, n := range []int{0, 410, 500} {
		all, of := valSample(val, n, 7)
		if len(all) != 410 || of != 410 || !slices.IsSorted(all) || all[0] != 0 || all[409] != 409 {
			t.Fatalf("%d of 410: got %d windows of %d", n, len(all), of)
		}
	}
	val = windows(10, 0, 4)
	all, of := valSample(val, 0, 7)
	if of != 8 || !slices.Equal(all, []int{1, 2, 3, 5, 6, 7, 8, 9}) {
		t.Fatalf("every window with targets of 10, two without: %v of %d", all, of)
	}
	some, _ := valSample(val, 5, 7)
	if len(some) != 5 || slices.Contains(some, 0) || slices.Contains(some, 4) {
		t.Fatalf("5 of the 8 windows with targets: %v", some)
	}
}

// TestValidationOnASample: with ValWindows, every pass reads the same
// seeded sample of the validation windows: its losses are those of a run
// validating on those windows alone, the best adapter is picked among
// them, and the metrics and adapter.json say what was sampled.
func TestValidationOnASample(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	exs := qaExamples(t, model)
	train := pack(exs, 128)
	var val []Window
	for _, ex := range exs {
		val = append(val, pack([]example{ex}, 128)...)
	}
	const n = 5
	run := func(val []Window, windows int) (*Result, []Metrics) {
		cfg := Config{Rank: 4, Alpha: 8, LearningRate: 1e-2, MaxSteps: 6, EvalEvery: 2, ValWindows: windows, Seed: 3, Threads: 1, Files: filesIn(t.TempDir())}
		var vals []Metrics
		res, err := Train(context.Background(), model, cfg, Data{Train: train, Val: val}, func(m Metrics) {
			if m.ValLoss != nil {
				vals = append(vals, m)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		info, err := adapters.ReadInfo(cfg.Files.Adapter)
		if err != nil {
			t.Fatal(err)
		}
		if info.Training.ValWindows != res.ValWindows || info.Training.ValWindowsTotal != res.ValWindowsTotal {
			t.Fatalf("adapter.json: validation on %d of %d windows; the run: %d of %d", info.Training.ValWindows, info.Training.ValWindowsTotal, res.ValWindows, res.ValWindowsTotal)
		}
		return res, vals
	}
	res, sampled := run(val, n)
	if res.ValWindows != n || res.ValWindowsTotal != len(val) {
		t.Fatalf("validation on %d of %d windows, want %d of %d", res.ValWindows, res.ValWindowsTotal, n, len(val))
	}
	idx, _ := valSample(val, n, 3)
	var chosen []Window
	for _, i := range idx {
		chosen = append(chosen, val[i])
	}
	alone, on := run(chosen, 0)
	if alone.ValWindows != n || alone.ValWindowsTotal != n {
		t.Fatalf("every window of %d: validation on %d of %d", n, alone.ValWindows, alone.ValWindowsTotal)
	}
	if len(sampled) != 3 || len(on) != 3 {
		t.Fatalf("%d and %d validation passes, want 3", len(sampled), len(on))
	}
	best := math.Inf(1)
	for i := range sampled {
		if sampled[i].ValWindows != n || *sampled[i].ValLoss != *on[i].ValLoss {
			t.Fatalf("step %d: validation on %d windows gave %v; on the sampled windows alone %v", sampled[i].Step, sampled[i].ValWindows, *sampled[i].ValLoss, *on[i].ValLoss)
		}
		best = min(best, *sampled[i].ValLoss)
	}
	if *res.BestValLoss != best || *res.ValLoss != best {
		t.Fatalf("best validation loss %v, final %v; the passes' best %v", *res.BestValLoss, *res.ValLoss, best)
	}
	t.Logf("validation on %d of %d windows: losses %.4f %.4f %.4f, best at step %d", n, len(val), *sampled[0].ValLoss, *sampled[1].ValLoss, *sampled[2].ValLoss, res.BestStep)
}
