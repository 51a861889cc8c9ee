package datasets

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/parquet-go/parquet-go"
)

// readAllRecords reads every record of path, collecting the row errors.
func readAllRecords(t *testing.T, path string, o ReadOptions) ([]Record, []*RowError) {
	t.Helper()
	rd, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs []Record
	var bad []*RowError
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return recs, bad
		}
		var re *RowError
		if errors.As(err, &re) {
			bad = append(bad, re)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

func TestPreferencePairForms(t *testing.T) {
	masked := func(s string) Message { return Message{Role: "assistant", Content: s, Mask: true} }
	lines := []string{
		// TRL's standard form: strings.
		`{"prompt": "Hi", "chosen": "Hello!", "rejected": "What."}`,
		// Conversational: the prompt as turns, the answers as assistant turns.
		`{"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}], "chosen": [{"role": "assistant", "content": "Goodbye!"}], "rejected": [{"role": "assistant", "content": "Whatever."}]}`,
		// Whole conversations sharing a prefix (the implicit prompt).
		`{"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}`,
		// Bad rows.
		`{"prompt": "Hi", "chosen": "Hello!"}`,
		`{"chosen": "Hello!", "rejected": "What."}`,
		`{"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "rejected": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}`,
		`{"prompt": "Hi", "chosen": "Hello!", "rejected": [{"role": "user", "content": "No"}]}`,
		`{"prompt": "Hi", "chosen": "Hello!", "rejected": "  "}`,
	}
	path := writeFile(t, "pairs.jsonl", strings.Join(lines, "\n")+"\n")
	recs, bad := readAllRecords(t, path, ReadOptions{Format: FormatPreference})
	want := []Record{
		{Messages: []Message{user("Hi"), assistant("Hello!")}, Rejected: []Message{user("Hi"), assistant("What.")}, PromptTurns: 1},
		{Messages: []Message{system("Be kind."), user("Hi"), masked("Hello"), user("Bye"), assistant("Goodbye!")},
			Rejected: []Message{system("Be kind."), user("Hi"), masked("Hello"), user("Bye"), assistant("Whatever.")}, PromptTurns: 4},
		{Messages: []Message{user("2+2?"), assistant("4")}, Rejected: []Message{user("2+2?"), assistant("5")}, PromptTurns: 1},
	}
	if len(recs) != len(want) {
		t.Fatalf("read %d records, want %d (bad rows %v)", len(recs), len(want), bad)
	}
	for i := range want {
		got := recs[i]
		if !slices.Equal(got.Messages, want[i].Messages) || !slices.Equal(got.Rejected, want[i].Rejected) || got.PromptTurns != want[i].PromptTurns || got.Format != FormatPreference {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	wantErr := []string{
		":4: rejected: missing field",
		":5: chosen: an answer given as text needs a prompt field",
		":6: rejected[0]: the chosen and rejected conversations share no prompt",
		":7: rejected[0]: the answer after the prompt starts with a user turn",
		":8: rejected: empty text",
	}
	if len(bad) != len(wantErr) {
		t.Fatalf("%d bad rows %v, want %d", len(bad), bad, len(wantErr))
	}
	for i, w := range wantErr {
		if !strings.Contains(bad[i].Error(), w) {
			t.Errorf("bad row %d: %q, want it to hold %q", i, bad[i].Error(), w)
		}
	}

	// Detected without naming the format; a system prompt from the options
	// goes into both sides as part of the prompt.
	recs, bad = readAllRecords(t, writeFile(t, "p.jsonl", lines[0]+"\n"), ReadOptions{System: "Terse."})
	if len(bad) > 0 || len(recs) != 1 || recs[0].PromptTurns != 2 || recs[0].Rejected[0] != system("Terse.") || recs[0].Messages[0] != system("Terse.") {
		t.Fatalf("detected: %+v %v", recs, bad)
	}

	// CSV: strings, or turns as JSON text in a column.
	csv := "prompt,chosen,rejected\nHi,Hello!,What.\n" +
		`"[{""role"": ""user"", ""content"": ""Hi""}]","[{""role"": ""assistant"", ""content"": ""Hello!""}]","[{""role"": ""assistant"", ""content"": ""What.""}]"` + "\n"
	recs, bad = readAllRecords(t, writeFile(t, "pairs.csv", csv), ReadOptions{})
	if len(bad) > 0 || len(recs) != 2 {
		t.Fatalf("csv: %+v %v", recs, bad)
	}
	for _, r := range recs {
		if !slices.Equal(r.Messages, want[0].Messages) || !slices.Equal(r.Rejected, want[0].Rejected) {
			t.Errorf("csv %s: %+v", r.Source, r)
		}
	}

	// Parquet as Hugging Face writes a conversational preference dataset.
	type turn struct {
		Content *string `parquet:"content,optional"`
		Role    *string `parquet:"role,optional"`
	}
	type row struct {
		Prompt   []*turn `parquet:"prompt,optional,list"`
		Chosen   []*turn `parquet:"chosen,optional,list"`
		Rejected []*turn `parquet:"rejected,optional,list"`
	}
	pq := filepath.Join(t.TempDir(), "train.parquet")
	f, err := os.Create(pq)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[row](f)
	tn := func(role, content string) *turn { return &turn{Role: ptr(role), Content: ptr(content)} }
	if _, err := w.Write([]row{{Prompt: []*turn{tn("user", "Hi")}, Chosen: []*turn{tn("assistant", "Hello!")}, Rejected: []*turn{tn("assistant", "What.")}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recs, bad = readAllRecords(t, pq, ReadOptions{})
	if len(bad) > 0 || len(recs) != 1 || !slices.Equal(recs[0].Messages, want[0].Messages) || !slices.Equal(recs[0].Rejected, want[0].Rejected) {
		t.Fatalf("parquet: %+v %v", recs, bad)
	}
}

// TestRenderPairAsServed renders pairs with SmolLM2's own chat template:
// both sides begin with exactly the prompt tokens generation uses, and
// only each answer and its end-of-turn token are weighted.
func TestRenderPairAsServed(t *testing.T) {
	m := load(t, shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
	r, err := NewRenderer(m, RenderOptions{TrainOnInputs: true}) // ignored for pairs
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Messages: []Message{user("Where is my order?"), {Role: "assistant", Content: "Let me look.", Mask: true}, user("It is late."), assistant("I am sorry: it ships today.")},
		Rejected: []Message{user("Where is my order?"), {Role: "assistant", Content: "Let me look.", Mask: true}, user("It is late."), assistant("Not my problem.")}, PromptTurns: 3, Source: "t:1"}
	c, rj, err := r.RenderPair(rec)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := r.Case(rec)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Reference != "I am sorry: it ships today." || len(cs.Prompt) != 3 {
		t.Fatalf("case %+v", cs)
	}
	lm := []llama.Message{{Role: "user", Content: "Where is my order?"}, {Role: "assistant", Content: "Let me look."}, {Role: "user", Content: "It is late."}}
	prompt, err := llama.ApplyTemplate(m.ChatTemplate(), lm, true)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := m.Tokenize(prompt, true, true)
	if err != nil {
		t.Fatal(err)
	}
	for name, ex := range map[string]Example{"chosen": c, "rejected": rj} {
		answer := map[string]string{"chosen": "I am sorry: it ships today.", "rejected": "Not my problem."}[name]
		if !slices.Equal(ex.Tokens[:len(pt)], pt) {
			t.Fatalf("%s does not begin with the served prompt's tokens", name)
		}
		var trained []int32
		for i, w := range ex.Weights {
			if w > 0 {
				if i < len(pt) {
					t.Fatalf("%s: prompt token %d weighted", name, i)
				}
				trained = append(trained, ex.Tokens[i])
			}
		}
		if len(trained) != len(ex.Tokens)-len(pt) || !m.IsEndOfGeneration(trained[len(trained)-1]) {
			t.Fatalf("%s: %d of %d answer tokens weighted, last %q", name, len(trained), len(ex.Tokens)-len(pt), m.TokenText(trained[len(trained)-1]))
		}
		if got := spell(m, trained[:len(trained)-1]); got != answer {
			t.Fatalf("%s: weighted %q, want %q", name, got, answer)
		}
	}
}

// TestScanPairs counts pairs, identical pairs and truncated ones, and
// drops a pair whole when one side is too long.
func TestScanPairs(t *testing.T) {
	m := llama3Model(t)
	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("word ", 60)
	lines := `{"prompt": "a", "chosen": "yes", "rejected": "no"}
{"prompt": "b", "chosen": "same", "rejected": "same"}
{"prompt": "c", "chosen": "short", "rejected": "` + long + `"}
{"prompt": "d", "chosen": "ok", "rejected": "fine"}
`
	path := writeFile(t, "pairs.jsonl", lines)
	exs, err := r.Render(Record{Messages: []Message{user("c"), assistant("short")}})
	if err != nil {
		t.Fatal(err)
	}
	maxLen := len(exs[0].Tokens) + 4
	for _, overflow := range []Overflow{Drop, Truncate} {
		rep, items := scanAll(t, Config{Train: path, MaxLength: maxLen, Overflow: overflow}, r)
		st := rep.Train
		wantPairs, wantTrunc, wantDrop := 3, 0, 1
		if overflow == Truncate {
			wantPairs, wantTrunc, wantDrop = 4, 1, 0
		}
		if st.Records != 4 || st.Pairs != wantPairs || st.IdenticalPairs != 1 || st.TruncatedPairs != wantTrunc || st.DroppedPairs != wantDrop || st.Examples != 2*wantPairs {
			t.Fatalf("%s: %+v", overflow, st)
		}
		kept := 0
		for _, it := range items[TrainSplit] {
			if len(it.Examples) != 0 && len(it.Examples) != 2 {
				t.Fatalf("%s: an item with %d examples", overflow, len(it.Examples))
			}
			kept += len(it.Examples) / 2
		}
		if kept != wantPairs || st.Lengths.Count != 8 {
			t.Fatalf("%s: %d pairs handed on, %d lengths", overflow, kept, st.Lengths.Count)
		}
	}
}
