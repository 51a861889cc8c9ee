package lora

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestSmolLM2LearnsToStop tunes a real instruct model, SmolLM2-135M-Instruct
// from its Q4_1 file, briefly on a handful of the customer-support recipe's
// conversations rendered with its own chat template (LoRA on the seven
// projections), and answers the trained prompts greedily through
// llama.cpp with the adapter: every answer must end at <|im_end|>, the
// end-of-turn token training put after each reply, not at the token limit,
// and all but one must be the trained reply. The base ends its own replies
// at <|im_end|> too; a model tuned too little (the same 24 steps on 6
// conversations) answered half of them in loops to the token limit.
func TestSmolLM2LearnsToStop(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	imEnd := m.EOS()
	if got := m.TokenText(imEnd); got != "<|im_end|>" {
		t.Fatalf("SmolLM2's EOS is %q, want <|im_end|>", got)
	}
	r, err := datasets.NewRenderer(m, datasets.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := datasets.Open(filepath.Join("..", "recipes", "data", "customer-support", "train.jsonl"), datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// The first 4 conversations of one question and one answer.
	const n = 4
	var exs []datasets.Example
	var cases []datasets.Case
	for len(cases) < n {
		rec, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Messages) != 3 {
			continue
		}
		ex, err := r.Render(rec)
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.Case(rec)
		if err != nil {
			t.Fatal(err)
		}
		exs, cases = append(exs, ex...), append(cases, c)
	}
	var windows []Window
	for _, w := range datasets.Pack(exs, 256) {
		windows = append(windows, Window{Tokens: w.Tokens, Weights: w.Weights, Pos: w.Pos, Seq: w.Seq})
	}

	start := time.Now()
	const steps = 24
	res, err := Train(context.Background(), model, Config{
		Rank: 8, Alpha: 16, LearningRate: 2e-3, Schedule: "cosine", WarmupSteps: 2,
		MaxSteps: steps, Seed: 1, Threads: 2, Files: filesIn(t.TempDir()),
	}, Data{Train: windows}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained %d steps on %d windows of 256 tokens (%d conversations) in %.1fs, loss %.3f", steps, len(windows), n, time.Since(start).Seconds(), res.TrainLoss)

	start = time.Now()
	stopped, exact := 0, 0
	for i, c := range cases {
		got, st := generate(t, model, res.Adapter, c.PromptTokens, 160)
		if st.Stop == llama.StopEndOfGeneration && st.End == imEnd {
			stopped++
		} else {
			t.Errorf("%s: the answer ends by %s (end token %d), not at <|im_end|>: %q", c.Source, st.Stop, st.End, got)
		}
		if got == c.Reference {
			exact++
		} else if i < 2 {
			t.Logf("%s: %q\n  trained on %q", c.Source, got, c.Reference)
		}
	}
	t.Logf("%d/%d greedy answers end at <|im_end|>, %d/%d are the trained reply word for word (%.1fs of generation)", stopped, n, exact, n, time.Since(start).Seconds())
	if exact < n-1 {
		t.Errorf("only %d/%d answers are the trained reply: the tuning did not take", exact, n)
	}
}
