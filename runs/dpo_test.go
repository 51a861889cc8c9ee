package runs

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
)

// supportPairs writes n preference pairs made from the customer-support
// recipe's conversations: the real answer chosen, a curt one rejected.
func supportPairs(t *testing.T, path string, from, n int) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "recipes", "data", "customer-support", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan() && i < from+n; i++ {
		if i < from {
			continue
		}
		var rec struct {
			Messages []map[string]string `json:"messages"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		k := len(rec.Messages) - 1
		line, _ := json.Marshal(map[string]any{"prompt": rec.Messages[:k], "chosen": []map[string]string{rec.Messages[k]},
			"rejected": []map[string]string{{"role": "assistant", "content": "Not my problem. Figure it out."}}})
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDPORunOnSmolLM2 runs DPO through a run folder on SmolLM2, after an
// SFT run (train.init: the SFT run's folder): the first step's loss is
// log 2 (the SFT adapter is the reference), metrics.jsonl holds the
// rewards of every step and validation, and supervised training refuses
// the pairs.
func TestDPORunOnSmolLM2(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	dir := t.TempDir()
	supportPairs(t, filepath.Join(dir, "train.jsonl"), 0, 4)
	supportPairs(t, filepath.Join(dir, "eval.jsonl"), 100, 1)
	sft := filepath.Join(t.TempDir(), "sft")
	common := func(train, eval string) string {
		return "base: " + model + "\ndata:\n  train: " + train + "\n  eval: " + eval + "\n  seq_len: 320\nlora: {rank: 4, alpha: 8, targets: [attn_q, attn_v]}\n"
	}
	loop := "  max_steps: 2\n  eval_every: 2\n  checkpoint_every: 1\n  threads: 1\n  learning_rate: 1e-3\n"

	r := recipe(t, dir, "name: pairs-as-sft\n"+common("train.jsonl", "eval.jsonl")+"train:\n"+loop)
	if _, _, err := Start(context.Background(), r, TrainOptions{Out: filepath.Join(t.TempDir(), "x"), Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "set train.method: dpo") {
		t.Fatalf("SFT on pairs: %v", err)
	}
	// The SFT run trains on the chosen conversations.
	conv := filepath.Join(dir, "conv.jsonl")
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(mustRead(t, filepath.Join(dir, "train.jsonl"))), "\n") {
		var p struct {
			Prompt []map[string]string `json:"prompt"`
			Chosen []map[string]string `json:"chosen"`
		}
		json.Unmarshal([]byte(l), &p)
		line, _ := json.Marshal(map[string]any{"messages": append(p.Prompt, p.Chosen...)})
		b.Write(append(line, '\n'))
	}
	os.WriteFile(conv, []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "conv-eval.jsonl"), []byte(b.String()), 0o644)
	r = recipe(t, dir, "name: sft\n"+common("conv.jsonl", "conv-eval.jsonl")+"train:\n"+loop)
	run, _, err := Start(context.Background(), r, TrainOptions{Out: sft, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()

	r = recipe(t, dir, "name: dpo\n"+common("train.jsonl", "eval.jsonl")+"train:\n"+loop+"  method: dpo\n  beta: 0.2\n  init: "+sft+"\n")
	out := filepath.Join(t.TempDir(), "dpo")
	var steps []lora.Metrics
	run, res, err := Start(context.Background(), r, TrainOptions{Out: out, Logger: slog.New(slog.DiscardHandler), Progress: func(m lora.Metrics) { steps = append(steps, m) }})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	if len(steps) != 2 || math.Abs(steps[0].Loss-math.Ln2) > 1e-3 || steps[0].Rewards == nil || steps[1].ValRewards == nil || res.ValLoss == nil {
		t.Fatalf("steps %+v, result %+v", steps, res)
	}
	lines := strings.Split(strings.TrimSpace(mustRead(t, filepath.Join(out, MetricsFile))), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"rewards":{"chosen":`) || !strings.Contains(lines[1], `"val_rewards":{"chosen":`) || !strings.Contains(lines[1], `"accuracies":`) {
		t.Fatalf("metrics.jsonl:\n%s", strings.Join(lines, "\n"))
	}
	if _, err := os.Stat(filepath.Join(out, AdapterFile)); err != nil {
		t.Fatal(err)
	}
	t.Logf("DPO after SFT on SmolLM2: step 1 loss %.4f, step 2 loss %.4f, val loss %.4f, val margin %.4f", steps[0].Loss, steps[1].Loss, *steps[1].ValLoss, steps[1].ValRewards.Margin)
}
