package testmodel

import (
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
)

// TestChatMLVocabulary: the ChatML tokens are control tokens, the template
// is llama.cpp's chatml, and <|im_end|> ends generation.
func TestChatMLVocabulary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, Config{Layers: 1, Embd: 64, Heads: 4, KVHeads: 4, FF: 128, ChatML: true}); err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text, err := m.ApplyChatTemplate("", []llama.Message{{Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if text != "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" {
		t.Fatalf("rendered %q", text)
	}
	toks, _ := m.Tokenize("<|im_start|>x<|im_end|>", false, true)
	if len(toks) != 3 || toks[0] != 259 || toks[2] != 260 {
		t.Fatalf("tokens %v, want the control tokens 259 and 260 around the byte of x", toks)
	}
	if !m.IsEndOfGeneration(260) || m.EOT() != 260 {
		t.Fatalf("<|im_end|> does not end generation (eot %d)", m.EOT())
	}
	// Spaces are one token that decodes back to a space.
	toks, _ = m.Tokenize("a b", false, false)
	if len(toks) != 3 || toks[1] != 261 || m.Detokenize(toks, false, false) != "a b" {
		t.Fatalf("\"a b\" -> %v -> %q", toks, m.Detokenize(toks, false, false))
	}
}
