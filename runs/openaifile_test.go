package runs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestOpenAIFineTuningFileWeights reads an OpenAI chat fine-tuning file as
// OpenAI's fine-tuning takes it (system/user/assistant turns, "weight" 0 or 1
// on assistant turns) through the path training takes, on SmolLM2's own
// chat template: the trained tokens of the training windows are exactly the
// assistant turns of weight 1 (and those without a weight), each with its
// <|im_end|>, and the weight-0 turns are in the windows as context only.
func TestOpenAIFineTuningFileWeights(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	dir := t.TempDir()
	rows := `{"messages": [{"role": "system", "content": "You are Lumora Home's support."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?", "weight": 0}, {"role": "user", "content": "My lamp broke."}, {"role": "assistant", "content": "Sorry to hear that; a replacement is on its way.", "weight": 1}]}
{"messages": [{"role": "user", "content": "Open on Sunday?"}, {"role": "assistant", "content": "Yes, from ten to four."}]}
{"messages": [{"role": "user", "content": "Tell me a secret."}, {"role": "assistant", "content": "Never trained on this one.", "weight": 0}]}
{"messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "Wrong first draft.", "weight": 0}, {"role": "user", "content": "Please check again."}, {"role": "assistant", "content": "It ships tomorrow.", "weight": 1}]}
`
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "ft.jsonl"), []byte(rows), 0o644)
	os.WriteFile(filepath.Join(dir, "data", "eval.jsonl"), []byte(`{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}`+"\n"), 0o644)
	r := recipe(t, dir, "name: ft\nbase: "+model+"\ndata:\n  train: data/ft.jsonl\n  eval: data/eval.jsonl\n  seq_len: 512\n  packing: false\n")
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d, err := ScanData(r, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var trained, context []string
	for _, w := range d.Train {
		var span []int32
		flush := func() {
			if len(span) > 0 {
				trained = append(trained, m.Detokenize(span, false, true))
				span = nil
			}
		}
		for i, tok := range w.Tokens {
			if w.Weights[i] > 0 {
				span = append(span, tok)
			} else {
				flush()
			}
		}
		flush()
		context = append(context, m.Detokenize(w.Tokens, false, true))
	}
	want := []string{"Sorry to hear that; a replacement is on its way.<|im_end|>", "Yes, from ten to four.<|im_end|>", "It ships tomorrow.<|im_end|>"}
	if strings.Join(trained, "|") != strings.Join(want, "|") {
		t.Fatalf("trained spans\n  %q\nwant\n  %q", trained, want)
	}
	all := strings.Join(context, "\n")
	for _, ctx := range []string{"Hello, how can I help?", "Wrong first draft."} {
		if !strings.Contains(all, ctx) {
			t.Errorf("the weight-0 turn %q is not in the windows as context", ctx)
		}
	}
	if strings.Contains(all, "Never trained on this one.") {
		t.Errorf("a conversation whose only answer has weight 0 made a window")
	}
	if rep := d.Report.Train; rep.Records != 4 || rep.Examples != 3 || rep.Untrained != 1 {
		t.Errorf("report: %d records, %d examples, %d untrained; want 4, 3, 1", rep.Records, rep.Examples, rep.Untrained)
	}
	t.Logf("trained spans: %q", trained)
}
