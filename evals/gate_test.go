package evals

import (
	"strings"
	"testing"
)

func gateResults() *Results {
	return &Results{
		Base:    "base",
		Metrics: []MetricInfo{{Name: "accuracy", Kind: Label, Columns: []string{"accuracy", "accuracy_macro_f1"}}, {Name: "rouge", Kind: RougeL, Columns: []string{"rouge"}}},
		Contestants: []ContestantResult{
			{Name: "base", Status: "ok", Scores: map[string]Score{"accuracy": {Value: 0.5, N: 10}, "accuracy_macro_f1": {Value: 0.4, N: 10}, "rouge": {Value: 0.3, N: 10}}},
			{Name: "tuned", Status: "ok", Cost: 0.25, LatencyP95MS: 800, Scores: map[string]Score{"accuracy": {Value: 0.5625, N: 10}, "rouge": {Value: 0.6, N: 10}}},
			{Name: "llama-3b", Status: "ok", Scores: map[string]Score{"accuracy": {Value: 0.7, N: 10}}},
			{Name: "dead", Status: "failed", Error: "HTTP 401", Scores: map[string]Score{}},
		},
	}
}

func TestGates(t *testing.T) {
	r := gateResults()
	for expr, want := range map[string]bool{
		"tuned.accuracy - base.accuracy >= 0.05":             true,
		"tuned.accuracy - base.accuracy >= 0.1":              false,
		"tuned.accuracy-base.accuracy>0.06":                  true, // no spaces: '-' after the dot subtracts
		"tuned.rouge >= 1.5 * base.rouge":                    true,
		"tuned.rouge >= 2.5 * base.rouge":                    false,
		"llama-3b.accuracy - tuned.accuracy < 0.2":           true, // '-' inside a contestant name
		"tuned.cost_usd <= 0.25":                             true,
		"tuned.latency_p95_ms < 500":                         false,
		"(tuned.accuracy + base.accuracy) / 2 == 0.53125":    true,
		"1 + 2 * 3 == 7":                                     true,
		"-tuned.accuracy < 0":                                true,
		"tuned.accuracy != base.accuracy":                    true,
		"base.accuracy_macro_f1 > 0.39":                      true,
		"tuned.accuracy - base.accuracy >= 5e-2":             true,
		"tuned.accuracy >= base.accuracy + 0.0625 - 1e-12":   true,
		"tuned.failed == 0":                                  true,
		"tuned.accuracy - base.accuracy >= 0.05 * (2 - 1.5)": true,
	} {
		g, err := ParseGate(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		ok, line, err := g.Check(r)
		if err != nil || ok != want {
			t.Errorf("%s: %v (%s, err %v), want %v", expr, ok, line, err, want)
		}
	}
	g, _ := ParseGate("tuned.accuracy - base.accuracy >= 0.05")
	if _, line, _ := g.Check(r); line != "tuned.accuracy - base.accuracy >= 0.05: tuned.accuracy - base.accuracy = 0.0625 >= 0.05: passes" {
		t.Errorf("line %q", line)
	}
}

func TestGateErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"tuned.accuracy >=":                     "expected a number",
		"tuned.accuracy - base.accuracy":        "expected a comparison",
		"tuned.accuracy >= 0.05 base":           "unexpected",
		"tuned >= 1":                            "CONTESTANT.COLUMN",
		"tuned.a.b >= 1":                        "CONTESTANT.COLUMN",
		"tuned.accuracy >= 1.2.3":               "not a number",
		"tuned.accuracy >= (1":                  "expected ')'",
		"tuned.accuracy @ 1":                    "unexpected '@'",
		"":                                      "expected a number",
		"tuned.accuracy => base.accuracy + 0.1": "unexpected '=' at column 16",
	} {
		_, err := ParseGate(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want it to mention %q", expr, err, want)
		}
	}
	r := gateResults()
	for expr, want := range map[string]string{
		"gpt.accuracy >= 0.5":       `no contestant "gpt" (there are: base, tuned, llama-3b, dead)`,
		"tuned.bleu >= 0.5":         `no column "bleu" (there are: accuracy, accuracy_macro_f1, rouge, cost_usd`,
		"dead.accuracy >= 0.5":      "dead has no accuracy score (status failed: HTTP 401)",
		"tuned.accuracy_macro_f1>0": "tuned has no accuracy_macro_f1 score",
		"tuned.accuracy / 0 > 1":    "division by zero",
	} {
		g, err := ParseGate(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		ok, _, err := g.Check(r)
		if ok || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: ok %v err %v, want an error mentioning %q", expr, ok, err, want)
		}
	}
}
