package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/sweeps"
)

// TestSweepDPOWithPatience: a local sweep of two DPO trials (β 0.1 and
// 0.5) on stories260K whose validation pairs are the training pairs with
// chosen and rejected swapped, so every step that learns the training
// preference worsens the validation loss: with patience 1 each trial stops
// at its second validation (step 4 of 12), keeps the adapter of its best
// step (2), and is evaluated and ranked on the held-out pairs' preference.
func TestSweepDPOWithPatience(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	pairs := [][3]string{
		{"Tim saw a", " big red ball.", " sad old cat."}, {"The sun was", " warm and bright.", " cold and dark."},
		{"Lily had a", " happy day.", " bad day."}, {"The dog ran to the", " park.", " car."},
		{"Mom gave him a", " hug.", " push."}, {"They played in the", " garden.", " mud."},
	}
	var train, eval strings.Builder
	for _, p := range pairs {
		a, _ := json.Marshal(map[string]string{"prompt": p[0], "chosen": p[1], "rejected": p[2]})
		b, _ := json.Marshal(map[string]string{"prompt": p[0], "chosen": p[2], "rejected": p[1]})
		train.Write(append(a, '\n'))
		eval.Write(append(b, '\n'))
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(train.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(eval.String()), 0o644)
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(fmt.Sprintf(`name: dpo-sweep
base: %s
data: {train: train.jsonl, eval: eval.jsonl, template: none, seq_len: 32}
lora: {rank: 4}
train:
  method: dpo
  max_steps: 12
  batch_size: 2
  learning_rate: 2e-2
  eval_every: 2
  patience: 1
  checkpoint_every: 2
  threads: 1
eval:
  contestants: [{name: base}, {name: tuned, adapter: tuned}]
  metrics: [{name: preference}]
sweep:
  grid:
    train.beta: [0.1, 0.5]
`, model)), 0o644)
	out := filepath.Join(t.TempDir(), "sweep")
	if r := cli(t, "sweep", recipe, "--executor", "local", "--out", out); r.code != 0 {
		t.Fatalf("sweep: exit %d\n%s", r.code, r.stderr)
	}
	lb := readLeaderboard(t, out)
	if len(lb.Trials) != 2 || lb.Counts[sweeps.Done] != 2 {
		t.Fatalf("leaderboard: %+v", lb)
	}
	for _, row := range lb.Trials {
		sc, ok := row.Scores["preference"]
		if row.Rank == 0 || !ok || sc.N != len(pairs) {
			t.Fatalf("trial %d: rank %d, preference %+v", row.Index, row.Rank, sc)
		}
		if row.Steps != 4 {
			t.Errorf("trial %d (%v) trained %d steps; patience 1 with a validation that only worsens stops at step 4", row.Index, row.Settings, row.Steps)
		}
		log, _ := os.ReadFile(filepath.Join(out, "trials", fmt.Sprintf("%03d", row.Index), "train.log"))
		if !strings.Contains(string(log), "stopped_early_at_best_step=2") {
			t.Errorf("trial %d's train.log does not say it stopped early at its best step 2:\n%s", row.Index, log)
		}
		metrics, _ := os.ReadFile(filepath.Join(out, "trials", fmt.Sprintf("%03d", row.Index), "metrics.jsonl"))
		if strings.Count(string(metrics), `"val_rewards":{"chosen":`) != 2 {
			t.Errorf("trial %d's metrics.jsonl has not 2 validations with rewards:\n%s", row.Index, metrics)
		}
	}
}
