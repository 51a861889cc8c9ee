package lora

import (
	"context"
	"testing"

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
