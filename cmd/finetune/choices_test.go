package main

import (
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestGenerateChoices: generate --choice restricts the answer to one of
// the choices, which ends it.
func TestGenerateChoices(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	r := cli(t, "generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "30", "--choice", "card_lost", "--choice", `top "up"`)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	got := strings.TrimSpace(strings.TrimPrefix(r.stdout, "Once upon a time"))
	if got != "card_lost" && got != `top "up"` || !strings.Contains(r.stderr, "stopped: end-of-generation") {
		t.Fatalf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}
