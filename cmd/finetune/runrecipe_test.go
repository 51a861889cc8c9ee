package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestRunRecipeIsARecipe: a finished run's recipe.yaml validates, and
// `eval RUN --set` evaluates with the overrides for that eval only,
// recording them in the eval's folder.
func TestRunRecipeIsARecipe(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "eval:\n  generation:\n    max_tokens: 4\n")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=3", "--set", "train.batch_tokens=100"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	if r := cli(t, "recipe", "validate", filepath.Join(run, "recipe.yaml")); r.code != 0 {
		t.Fatalf("the run's recipe.yaml is not a valid recipe: %s", r.stderr)
	}
	before, _ := os.ReadFile(filepath.Join(run, "recipe.yaml"))
	r := cli(t, "eval", run, "--set", "eval.generation.max_tokens=2", "--set", "eval.max_cases=2")
	if r.code != 0 {
		t.Fatalf("eval RUN --set: exit %d: %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(run, "recipe.yaml"))
	if string(before) != string(after) {
		t.Fatal("eval --set changed the run's recipe.yaml")
	}
	got, _ := filepath.Glob(filepath.Join(run, "eval-*", "eval-recipe.yaml"))
	if len(got) != 1 {
		t.Fatalf("no eval-recipe.yaml in an eval-* folder of the run: %v", got)
	}
	b, _ := os.ReadFile(got[0])
	if !strings.Contains(string(b), "--set eval.generation.max_tokens=2") || !strings.Contains(string(b), "max_tokens: 2") {
		t.Fatalf("eval-recipe.yaml does not record the overrides:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(got[0]), "results.json")); err != nil {
		t.Fatal("no results.json beside eval-recipe.yaml")
	}
	if r := cli(t, "eval", run, "--set", "lora.rankk=2"); r.code == 0 || !strings.Contains(r.stderr, "rank") {
		t.Fatalf("a bad --set on a run: exit %d, %q", r.code, r.stderr)
	}
}
