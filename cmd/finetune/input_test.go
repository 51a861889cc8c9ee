package main

import (
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
