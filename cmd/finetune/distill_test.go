package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/runs"
)

// firstLines writes the first n lines of a shipped data file to dst.
func firstLines(t *testing.T, src, dst string, n int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")[:n]
	if err := os.WriteFile(dst, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDistillCommand runs `finetune distill` from prompts to an evaluated
// student on SmolLM2-135M-Instruct: the teacher is the pinned Ollama
// serving the same model through /v1 (priced as an API would be), the
// student trains a few steps on the distilled answers in the same run
// folder, and the eval compares student, base and teacher with the cost of
// 1,000 answers of each beside the teacher's cost for the training data.
func TestDistillCommand(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	srv.CreateChat(t, "teacher", model, map[string]any{"num_thread": 1})
	data, err := filepath.Abs(filepath.Join(shared.ModuleRoot(), "recipes", "data", "customer-support"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	firstLines(t, filepath.Join(data, "train.jsonl"), "prompts.jsonl", 4)
	firstLines(t, filepath.Join(data, "eval.jsonl"), "eval.jsonl", 2)
	recipe := fmt.Sprintf(`name: student
base: %s
data:
  eval: eval.jsonl
  seq_len: 512
lora:
  rank: 4
train:
  max_steps: 3
  learning_rate: 1e-3
  eval_every: 100
  val_windows: 1
  checkpoint_every: 100
  threads: 2
distill:
  prompts: prompts.jsonl
  teacher: teacher
  generation:
    max_tokens: 64
  filters:
    keep_cut: true
    refusals: ["(?i)as an ai"]
eval:
  contestants:
    - name: base
      kind: local
      price_out: 0.02
    - name: student
      kind: local
      adapter: tuned
      price_out: 0.02
    - name: teacher
      kind: openai
      model: teacher
      base_url: %s/v1
      concurrency: 1
      timeout: 2m
      price_in: 0.15
      price_out: 0.6
  metrics:
    - name: rouge_l
  generation:
    max_tokens: 8
    temperature: 0
`, model, srv.URL)
	os.WriteFile("recipe.yaml", []byte(recipe), 0o644)
	out := filepath.Join(dir, "run")
	r := cli(t, "distill", "recipe.yaml", "--out", out)
	if r.code != 0 || r.signal != "" {
		t.Fatalf("exit %d %s\nstdout:\n%s\nstderr:\n%s", r.code, r.signal, r.stdout, r.stderr)
	}
	t.Logf("stdout:\n%s", r.stdout)
	for _, want := range []string{"4 × 1 answers: 4 answered (0 from the cache), 0 failed", "kept", "training data: 4 answers from teacher for $",
		"cost per 1,000 answers", "report: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	var rep runs.DistillReport
	b, err := os.ReadFile(filepath.Join(out, runs.DistillReportFile))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &rep)
	if rep.Rows+rep.Filtered.Total() != 4 || rep.CostUSD <= 0 {
		t.Errorf("distill report %+v", rep)
	}
	run, err := runs.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if run.Record.State != runs.Finished || run.Recipe.Data.Train != filepath.Join(out, runs.DistilledFile) || run.Recipe.Distill.Prompts != filepath.Join(dir, "prompts.jsonl") {
		t.Errorf("run: state %s, data.train %q, distill.prompts %q", run.Record.State, run.Recipe.Data.Train, run.Recipe.Distill.Prompts)
	}
	md, err := os.ReadFile(filepath.Join(out, runs.EvalDir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| cost per 1,000 answers |") || !strings.Contains(string(md), "training data distilled from teacher (openai teacher): ") {
		t.Errorf("report.md has no cost per 1,000 answers:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(out, runs.AdapterFile)); err != nil {
		t.Error(err)
	}

	// A second distillation of the recipe asks the teacher nothing.
	r = cli(t, "distill", "recipe.yaml", "--data-only", "--out", filepath.Join(dir, "again"))
	if r.code != 0 || !strings.Contains(r.stdout, "4 answered (4 from the cache)") {
		t.Fatalf("again: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// A recipe without a distill section is told what to add.
	os.WriteFile("plain.yaml", []byte("name: p\nbase: "+model+"\ndata:\n  train: eval.jsonl\n"), 0o644)
	wantCleanError(t, cli(t, "distill", "plain.yaml"), "no distill section", "distill.teacher")
}
