package evals

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// supportPairCases are preference-pair cases from the customer-support
// recipe's eval conversations, rendered with SmolLM2's template: the real
// answer chosen, a curt one rejected (swapped: the other way round).
func supportPairCases(t *testing.T, model string, n int, swapped bool) []Case {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := datasets.NewRenderer(m, datasets.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join("..", "recipes", "data", "customer-support", "eval.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var cases []Case
	for sc.Scan() && len(cases) < n {
		var rec struct {
			Messages []datasets.Message `json:"messages"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		k := len(rec.Messages) - 1
		curt := datasets.Message{Role: "assistant", Content: "Not my problem. Figure it out."}
		chosen, rejected := rec.Messages[k], curt
		if swapped {
			chosen, rejected = rejected, chosen
		}
		pr := datasets.Record{Messages: append(append([]datasets.Message(nil), rec.Messages[:k]...), chosen),
			Rejected: append(append([]datasets.Message(nil), rec.Messages[:k]...), rejected), PromptTurns: k, Source: "eval.jsonl"}
		c, err := r.Case(pr)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return cases
}

// TestPreferenceMetric scores preference pairs on SmolLM2: ScoreTokens
// equals the sum of the next-token log-probabilities LogProbs gives one
// answer token at a time, and the preference accuracy of the swapped
// pairs is one minus that of the pairs.
func TestPreferenceMetric(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	cases := supportPairCases(t, model, 6, false)
	base := newLocal(t, "base", model, nil, 1, Settings{MaxTokens: 4})
	if err := base.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ex := cases[0].Pair.Rejected
	got, err := base.ScoreTokens(context.Background(), ex.Tokens, ex.Weights)
	if err != nil {
		t.Fatal(err)
	}
	prompt := len(cases[0].PromptTokens)
	want := 0.0
	for k := prompt; k < len(ex.Tokens); k++ {
		if ex.Weights[k] == 0 {
			t.Fatalf("token %d after the prompt is not weighted", k)
		}
		lp, err := base.LogProbs(context.Background(), cases[0], ex.Tokens[prompt:k])
		if err != nil {
			t.Fatal(err)
		}
		want += lp[ex.Tokens[k]]
	}
	if math.Abs(got-want) > 1e-3*math.Abs(want) {
		t.Fatalf("ScoreTokens %v, token by token %v", got, want)
	}

	suite := Suite{Cases: cases, Metrics: []Metric{{Name: "preference", Kind: Preference}}}
	res, err := Run(context.Background(), suite, []Contestant{base}, RunOptions{Bootstrap: 200})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Contestant("base").Scores["preference"]
	suite.Cases = supportPairCases(t, model, 6, true)
	res2, err := Run(context.Background(), suite, []Contestant{base}, RunOptions{Bootstrap: 200})
	if err != nil {
		t.Fatal(err)
	}
	s2 := res2.Contestant("base").Scores["preference"]
	if s.N != 6 || s2.N != 6 || math.Abs(s.Value+s2.Value-1) > 1e-9 || s.Low > s.Value || s.High < s.Value {
		t.Fatalf("preference %+v, swapped %+v", s, s2)
	}
	if d := res.Cases[0].Answers[0].Details["preference"]; !strings.Contains(d, "log p(chosen)") {
		t.Fatalf("detail %q", d)
	}
	t.Logf("SmolLM2 base prefers the real answer over a curt one in %.2f [%.2f, %.2f] of %d pairs", s.Value, s.Low, s.High, s.N)

	// Cases that are not pairs make no preference score.
	suite.Cases = qaLikeCases(cases)
	if _, err := Run(context.Background(), suite, []Contestant{base}, RunOptions{Bootstrap: 20}); err == nil || !strings.Contains(err.Error(), "no eval case is a preference pair") {
		t.Fatalf("no pairs: %v", err)
	}
}

func qaLikeCases(cs []Case) []Case {
	out := make([]Case, len(cs))
	for i, c := range cs {
		c.Pair = nil
		out[i] = c
	}
	return out
}
