package runs

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// TestDPOStepTime times a DPO step against an SFT step on the same pairs
// of the customer-support-dpo recipe on SmolLM2: SFT trains on each pair's
// chosen conversation, DPO on both sides (and each pair's reference
// log-probabilities, forward only, at its first visit). The two alternate,
// a few steps each, so that the load of a shared machine falls on both
// alike. A figure for the README, not a check: set FINETUNE_STEP_TIMING=1.
func TestDPOStepTime(t *testing.T) {
	if os.Getenv("FINETUNE_STEP_TIMING") == "" {
		t.Skip("a measurement, minutes long: FINETUNE_STEP_TIMING=1 go test ./runs -run TestDPOStepTime -v")
	}
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	r, err := recipes.Load(filepath.Join("..", "recipes", "customer-support-dpo.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := LoadData(r, model)
	if err != nil {
		t.Fatal(err)
	}
	var chosen []lora.Window
	for _, p := range d.TrainPairs {
		chosen = append(chosen, p.Chosen)
	}
	const rounds, steps = 2, 3
	var sft, dpo []float64
	for round := range rounds {
		for _, method := range []string{lora.MethodSFT, lora.MethodDPO} {
			cfg := lora.Config{Method: method, Rank: r.LoRA.Rank, Alpha: r.LoRA.Alpha, LearningRate: 1e-4, MaxSteps: steps, GradAccum: r.Train.BatchSize,
				Seed: uint64(round + 1), Threads: 1, FixedThreads: true, Files: filesIn(t.TempDir())}
			data := lora.Data{Train: chosen}
			if method == lora.MethodDPO {
				data = lora.Data{TrainPairs: d.TrainPairs}
			}
			var before int64
			_, err := lora.Train(context.Background(), model, cfg, data, func(m lora.Metrics) {
				tokens := m.Tokens - before
				before = m.Tokens
				if m.Step == 1 {
					return // the first step also builds the graphs
				}
				took := float64(tokens) / m.TokensPerSec // the step's own time
				if method == lora.MethodDPO {
					dpo = append(dpo, took)
				} else {
					sft = append(sft, took)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	ms, md := median(sft), median(dpo)
	t.Logf("SmolLM2, %d-token windows, %d pairs a step, 1 thread: SFT step median %.2f s (%d steps), DPO step median %.2f s (%d steps): DPO/SFT %.2f", r.Data.SeqLen, r.Train.BatchSize, ms, len(sft), md, len(dpo), md/ms)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func filesIn(dir string) lora.Files {
	return lora.Files{Checkpoint: filepath.Join(dir, "checkpoint.gguf"), Metrics: filepath.Join(dir, "metrics.jsonl"), Adapter: filepath.Join(dir, "adapter.gguf")}
}
