package lora

import (
	"context"
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
