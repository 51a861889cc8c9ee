package main

import (
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestModelGivenAsRecipe: a model where the recipe goes says so and where
// the model belongs, for every command that takes a recipe.
func TestModelGivenAsRecipe(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	for _, args := range [][]string{{"train", model}, {"eval", model}, {"recipe", "validate", model}, {"recipe", "show", model}} {
		r := cli(t, args...)
		wantCleanError(t, r, model+" is a GGUF model file, not a recipe", "`base:`")
		if r.code != exitFailure {
			t.Fatalf("%v: exit %d, want %d", args, r.code, exitFailure)
		}
	}
}

// TestAdapterGivenAsBase: a LoRA adapter where the base model goes (a
// recipe's base:, --model) is one line that names it as an adapter, not
// "missing llama.context_length".
func TestAdapterGivenAsBase(t *testing.T) {
	shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	adapter := filepath.Join(dir, "adapter.gguf")
	writeAdapter(t, adapter, "llama", map[string][2]uint64{"blk.0.attn_q.weight": {64, 64}}, 4)
	recipe := qaRecipe(t, adapter, "")
	data := filepath.Join(filepath.Dir(recipe), "train.jsonl")
	for _, args := range [][]string{
		{"train", recipe, "--out", filepath.Join(dir, "run")},
		{"generate", "--model", adapter, "--prompt", "Once"},
		{"data", "inspect", data, "--model", adapter},
	} {
		t.Run(args[0], func(t *testing.T) {
			wantCleanError(t, cli(t, args...), adapter+" is a LoRA adapter, not a base model", "base:", "--adapter")
		})
	}
}
