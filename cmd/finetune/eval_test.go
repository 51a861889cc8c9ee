package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestTrainThenEval: a run's adapter evaluated against its base through
// the recipe's suite writes the three reports, and a gate not met exits
// with code 3.
func TestTrainThenEval(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, `eval:
  metrics:
    - name: rouge_l
    - name: exact_match
  generation:
    max_tokens: 6
`)
	// Evaluate on questions the adapter was trained on: this tests the
	// plumbing, not generalisation.
	dir := filepath.Dir(recipe)
	train, _ := os.ReadFile(filepath.Join(dir, "train.jsonl"))
	lines := strings.SplitAfterN(string(train), "\n", 4)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(strings.Join(lines[:3], "")), 0o644)
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=60"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	r := cli(t, "eval", recipe, "--run", run)
	if r.code != 0 {
		t.Fatalf("eval: %s", r.stderr)
	}
	for _, f := range []string{"results.json", "report.md", "report.html"} {
		if _, err := os.Stat(filepath.Join(run, "eval", f)); err != nil {
			t.Fatalf("no %s", f)
		}
	}
	if !strings.Contains(r.stdout, "tuned - base") || !strings.Contains(r.stdout, "report: ") {
		t.Fatalf("headline:\n%s", r.stdout)
	}
	var res struct {
		Contestants []struct {
			Name   string
			Scores map[string]struct{ Value float64 }
		}
	}
	b, _ := os.ReadFile(filepath.Join(run, "eval", "results.json"))
	if err := json.Unmarshal(b, &res); err != nil || len(res.Contestants) != 2 {
		t.Fatalf("results.json: %v", err)
	}
	base, tuned := res.Contestants[0].Scores["rouge_l"].Value, res.Contestants[1].Scores["rouge_l"].Value
	if tuned <= base {
		t.Fatalf("tuned ROUGE-L %.3f is not above base %.3f", tuned, base)
	}
	// The gate: a demand the run cannot meet fails the command.
	g := cli(t, "eval", recipe, "--run", run, "--fail-under", "tuned.rouge_l - base.rouge_l >= 2")
	wantCleanError(t, g, "--fail-under not met")
	if g.code != exitGate {
		t.Fatalf("a gate not met exits with %d, want %d (not 1, an error)", g.code, exitGate)
	}
	if !strings.Contains(cli(t, "eval", recipe).stderr, "--run RUN_DIR or --adapter") {
		t.Fatal("eval without an adapter does not say how to give one")
	}
}

// TestExportMerge merges a run's adapter into its base through the CLI:
// the merged model loads in llama.cpp and greedy generation starts as the
// base with the adapter does, not as the base alone. (W + s·B·A)·x and
// W·x + s·B·(A·x) round differently, so a longer greedy continuation
// parts at the first near-tie; adapters.TestMergeEqualsAdapter compares
// the logits.
func TestExportMerge(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=30"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	merged := filepath.Join(t.TempDir(), "merged.gguf")
	if r := cli(t, "export", "merge", run, "--out", merged, "--type", "f32"); r.code != 0 {
		t.Fatalf("export merge: %s", r.stderr)
	}
	prompt := "Q: Who wrote Hamlet?\nA:"
	a := cli(t, "generate", "--model", model, "--adapter", filepath.Join(run, "adapter.gguf"), "--prompt", prompt, "--max-tokens", "6", "--threads", "1")
	b := cli(t, "generate", "--model", merged, "--prompt", prompt, "--max-tokens", "6", "--threads", "1")
	if a.code != 0 || b.code != 0 || a.stdout != b.stdout {
		t.Fatalf("base+adapter said %q, merged model said %q (%s %s)", a.stdout, b.stdout, a.stderr, b.stderr)
	}
	if plain := cli(t, "generate", "--model", model, "--prompt", prompt, "--max-tokens", "6", "--threads", "1"); plain.stdout == b.stdout {
		t.Fatalf("the merged model says what the base says (%q): the adapter was not folded in", b.stdout)
	}
	if u := cli(t, "export", "merge", run, "--out", merged, "--type", "q4_k"); u.code != 2 || !strings.Contains(u.stderr, "unknown type") || !strings.Contains(u.stderr, "q4_k_m") {
		t.Fatalf("an unknown --type: exit %d, %q", u.code, u.stderr)
	}
	if u := cli(t, "export", "merge", filepath.Join(run, "adapter.gguf"), "--out", merged); u.code != 2 || !strings.Contains(u.stderr, "--base is required") {
		t.Fatalf("an adapter without --base: exit %d, %q", u.code, u.stderr)
	}
}
