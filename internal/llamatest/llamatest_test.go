package llamatest

import (
	"math"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
)

// TestChatMLModelAndLogits: the ChatML model renders chats with ChatML,
// and Logits gives one finite row of vocabulary size per token, the same
// on every call.
func TestChatMLModelAndLogits(t *testing.T) {
	path := ChatMLModel(t)
	m, err := llama.LoadModel(path, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text, err := m.ApplyChatTemplate("", []llama.Message{{Role: "user", Content: "hi"}}, true)
	if err != nil || text != "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" {
		t.Fatalf("rendered %q, %v", text, err)
	}
	tokens, err := m.Tokenize(text, false, true)
	if err != nil {
		t.Fatal(err)
	}
	got := Logits(t, path, "", tokens)
	if len(got) != len(tokens) {
		t.Fatalf("%d rows of logits for %d tokens", len(got), len(tokens))
	}
	for i, row := range got {
		if len(row) != m.VocabSize() {
			t.Fatalf("row %d has %d logits, want %d", i, len(row), m.VocabSize())
		}
		for _, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("row %d holds %v", i, v)
			}
		}
	}
	again := Logits(t, path, "", tokens)
	for i := range got {
		if !slices.Equal(got[i], again[i]) {
			t.Fatalf("row %d differs between two calls", i)
		}
	}
}
