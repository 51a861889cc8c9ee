package basemodel

import (
	"context"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
)

// TestTinyWordsAreTokens: every word of builtin:tiny's list is one token
// when llama.cpp tokenizes it in text, with and without a leading space.
func TestTinyWordsAreTokens(t *testing.T) {
	dir := t.TempDir()
	p, err := Resolve(context.Background(), "builtin:tiny", dir, Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(p, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bad := 0
	for _, w := range tinyWords {
		text, lead := w, 0
		if s, ok := strings.CutPrefix(w, "\u2581"); ok {
			text, lead = "x. "+s+".", 2 // "x", ".", then the word
		} else {
			text, lead = "\n"+w+".", 1
		}
		toks, err := m.Tokenize(text, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) != lead+2 {
			if bad++; bad <= 10 {
				t.Errorf("%q: %d tokens %v, want the word as one", text, len(toks), toks)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d words are not one token", bad, len(tinyWords))
	}
	// A label of the customer-support recipe after its prefix.
	toks, _ := m.Tokenize("Intent: refund_request\n", false, false)
	if len(toks) != 4 {
		t.Errorf("\"Intent: refund_request\\n\" is %d tokens %v, want Intent, :, ▁refund_request, newline", len(toks), toks)
	}
}
