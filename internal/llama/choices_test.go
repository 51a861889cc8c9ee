package llama

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

func TestChoicesGrammarEscapes(t *testing.T) {
	got := ChoicesGrammar([]string{"card_lost", `say "hi"`, `back\slash`, "two\nlines\t\x01"})
	want := `root ::= " "? ("card_lost" | "say \"hi\"" | "back\\slash" | "two\nlines\t\x01")` + "\n"
	if got != want {
		t.Fatalf("grammar\n%s\nwant\n%s", got, want)
	}
}

// TestChoicesConstrainGeneration: with choices, greedy and sampled
// generation give exactly one of them and then stop, whatever the prompt
// (stories260K would rather tell a story); choices that need quoting and
// characters outside ASCII included.
func TestChoicesConstrainGeneration(t *testing.T) {
	m := loadModel(t, shared.Path(t, "models/stories260K.gguf"))
	choices := []string{"card_lost", "top_up_failed", `a "quoted" \ answer`, "café", "Lily"}
	for _, prompt := range []string{"Once upon a time", "The cat sat on", "Q: What is the capital of Peru?\nA:"} {
		for _, so := range []SampleOptions{{Choices: choices}, {Choices: choices, Temperature: 1.5, Seed: 3}} {
			toks, err := m.Tokenize(prompt, true, false)
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := NewContext(m, ContextOptions{Context: 128, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			st, err := Generate(context.Background(), ctx, toks, GenerateOptions{MaxTokens: 40, SampleOptions: so}, func(s string) { b.WriteString(s) })
			ctx.Close()
			if err != nil {
				t.Fatal(err)
			}
			text := strings.TrimPrefix(b.String(), " ")
			t.Logf("%q at temperature %g: %q", prompt, so.Temperature, b.String())
			if !slices.Contains(choices, text) || st.Stop != StopEndOfGeneration {
				t.Errorf("%q at temperature %g: %q (%s), not one of the choices", prompt, so.Temperature, b.String(), st.Stop)
			}
		}
	}
	if _, err := NewSampler(m, SampleOptions{Choices: []string{"a", ""}}); err == nil {
		t.Error("an empty choice was accepted")
	}
}
