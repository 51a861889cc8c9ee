package datasets

import (
	"errors"
	"io"
	"testing"
)

// TestReadPrompts: with Prompts, records are prompts to be answered: a
// conversation may end with a user turn, a prompt-completion row may lack
// its completion, and a row with only "prompt" is one; without it, the
// same rows are bad rows.
func TestReadPrompts(t *testing.T) {
	conv := writeFile(t, "c.jsonl", `{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}`+"\n")
	only := writeFile(t, "p.jsonl", `{"prompt": "Capital of France?"}`+"\n"+`{"prompt": "And Spain?", "completion": "Madrid."}`+"\n")
	read := func(path string, prompts bool) ([]Record, error) {
		r, err := Open(path, ReadOptions{Prompts: prompts})
		if err != nil {
			return nil, err
		}
		defer r.Close()
		var out []Record
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, rec)
		}
	}
	recs, err := read(conv, true)
	if err != nil || len(recs) != 1 || len(recs[0].Messages) != 2 || recs[0].Messages[1].Role != "user" {
		t.Fatalf("conversation ending with a user turn: %+v, %v", recs, err)
	}
	recs, err = read(only, true)
	if err != nil || len(recs) != 2 || recs[0].Format != FormatCompletion || len(recs[0].Messages) != 1 || recs[0].Messages[0].Content != "Capital of France?" ||
		len(recs[1].Messages) != 2 {
		t.Fatalf("prompts: %+v, %v", recs, err)
	}
	if _, err := read(conv, false); err == nil {
		t.Error("a conversation without an answer read as training data")
	}
	if _, err := read(only, false); err == nil {
		t.Error("a prompt without a completion read as training data")
	}
}
