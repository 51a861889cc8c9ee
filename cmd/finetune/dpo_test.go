package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestDataInspectPairs: data inspect on the shipped DPO recipe, on
// SmolLM2, counts its preference pairs, those dropped for length, and a
// window per side.
func TestDataInspectPairs(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	r := cli(t, "data", "inspect", filepath.Join("..", "..", "recipes", "customer-support-dpo.yaml"), "--set", "base="+model)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"format         preference (300 records)",
		"preference pairs                  177         90",
		"  identical                         0          0",
		"  dropped (too long)               23         10",
		"without packing, training takes 354 window(s) of 192 tokens",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}
