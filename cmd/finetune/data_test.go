package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

const inspectData = `{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], "label": "math"}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}
{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], "label": "math"}
{"messages": [{"role": "user", "content": "Colour of grass?"}, {"role": "assistant", "content": "Green, mostly, and sometimes yellow in a dry summer when it has not rained for many weeks in a row."}]}
`

func TestDataInspect(t *testing.T) {
	model := shared.Path(t, "models/llama-2-tiny-random.gguf")
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	os.WriteFile(data, []byte(inspectData), 0o644)
	eval := filepath.Join(dir, "eval.jsonl")
	os.WriteFile(eval, []byte(`{"messages": [{"role": "user", "content": "Colour of grass?"}, {"role": "assistant", "content": "Green."}]}`+"\n"), 0o644)

	r := cli(t, "data", "inspect", data, "--model", model, "--template", "llama2", "--eval", eval, "--ctx", "30", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		Formats map[string]int `json:"formats"`
		Train   struct {
			Records, Duplicates, Examples, Dropped int
			Tokens, Trained                        int64
			Lengths                                struct{ Count, Max int }
		} `json:"train"`
		Eval    struct{ Records int } `json:"eval"`
		Leaks   int                   `json:"leaks"`
		Windows struct{ Context, Count int }
		Example struct {
			Source   string
			Tokens   []int32
			Trained  int
			Segments []struct {
				Text    string
				Trained bool
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	tr := out.Train
	// 4 lines, one duplicate; the long answer does not fit 30 tokens.
	// Formats count every record read, the eval file's included.
	if out.Formats["messages"] != 5 || tr.Records != 3 || tr.Duplicates != 1 || tr.Examples != 2 || tr.Dropped != 1 || tr.Lengths.Count != 3 || tr.Lengths.Max <= 30 {
		t.Fatalf("report %+v", out)
	}
	if out.Eval.Records != 1 || out.Leaks != 1 || out.Windows.Context != 30 || out.Windows.Count != 2 {
		t.Fatalf("eval %d, leaks %d, windows %+v", out.Eval.Records, out.Leaks, out.Windows)
	}
	ex := out.Example
	if ex.Source != data+":1" || len(ex.Segments) != 2 || ex.Segments[0].Text != "<s> [INST] What is 2+2? [/INST]" || ex.Segments[0].Trained ||
		ex.Segments[1].Text != "4</s>" || !ex.Segments[1].Trained || ex.Trained != 2 {
		t.Fatalf("example %+v", ex)
	}

	r = cli(t, "data", "inspect", data, "--model", model, "--template", "llama2", "--eval", eval, "--ctx", "30", "--example", "2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"chat template  llama2 (built-in)",
		"records                             3          1",
		"dropped (too long)                  1          0",
		"leakage: 1 training records ask an eval prompt, e.g.:\n  " + data + ":4 = " + eval + ":1",
		"token lengths of training examples: min ",
		"(over the context of 30)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "<s> [INST] Be brief.\nCapital of France? [/INST]«Paris.</s>»") {
		t.Errorf("the second example is not shown with its trained tokens marked:\n%s", r.stdout)
	}
}

func TestDataInspectWithoutModel(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d.csv")
	os.WriteFile(data, []byte("q,a\nWhy?,Because.\nHow?,So.\n"), 0o644)
	r := cli(t, "data", "inspect", data, "--field", "prompt=q", "--field", "response=a")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"fields (2 records)", "need --model", "record " + data + ":2:", "  user      Why?", "  assistant Because."} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestDataInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(inspectData+`{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}`+"\n"), 0o644)
	wantCleanError(t, cli(t, "data", "inspect", bad), bad+":5: messages[1]: empty assistant turn", "--max-bad-rows")
	wantCleanError(t, cli(t, "data", "inspect", filepath.Join(dir, "none.jsonl")), "none.jsonl", "no such file")
	wantCleanError(t, cli(t, "data", "inspect", bad, "--model", filepath.Join(dir, "m.gguf")), "m.gguf", "no such file")
	wantCleanError(t, cli(t, "data", "inspect", filepath.Join(dir, "r.yaml")), "r.yaml", "no such recipe file")

	r := cli(t, "data", "inspect", bad, "--max-bad-rows", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "bad rows skipped: 1\n  "+bad+":5: messages[1]: empty assistant turn") {
		t.Fatalf("skipping: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"data"}, {"data", "frobnicate"}, {"data", "inspect"}, {"data", "inspect", "recipe.yaml", "--eval-ratio", "0.1"}, {"data", "inspect", bad, "--set", "data.seq_len=64"}, {"data", "inspect", bad, "--field", "answer=x"}, {"data", "inspect", bad, "--template", "llama2"}} {
		r := cli(t, args...)
		if r.code != 2 || r.signal != "" {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestDataInspectRecipe(t *testing.T) {
	model := shared.Path(t, "models/llama-2-tiny-random.gguf")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(inspectData), 0o644)
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: demo\nbase: "+model+"\ndata:\n  train: train.jsonl\n  template: llama2\n  seq_len: 30\n  eval_ratio: 0.5\n  seed: 7\n"), 0o644)

	r := cli(t, "data", "inspect", recipe)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"train data     " + filepath.Join(dir, "train.jsonl"), // relative to the recipe's folder
		"eval split     0.5 of the prompts held out (seed 7)",
		"chat template  llama2 (built-in)",
		"context        30 tokens; longer examples: drop",
		"window(s) of 30 tokens",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, "data", "inspect", recipe, "--set", "data.seq_len=64", "--set", "data.packing=false", "--json")
	var out struct {
		MaxLength int `json:"max_length"`
		Windows   struct {
			Context int
			Packing bool
			Count   int
		}
		Train, Eval struct{ Examples int }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s%s", r.code, err, r.stdout, r.stderr)
	}
	if out.MaxLength != 64 || out.Windows.Context != 64 || out.Windows.Packing || out.Windows.Count != out.Train.Examples || out.Train.Examples+out.Eval.Examples != 3 {
		t.Fatalf("with --set: %+v", out)
	}
	r = cli(t, "data", "inspect", recipe, "--eval-ratio", "0.2")
	if r.code != 2 || !strings.Contains(r.stderr, "--set data.KEY=VALUE") {
		t.Fatalf("a data flag with a recipe: exit %d, %q", r.code, r.stderr)
	}
	os.WriteFile(recipe, []byte("name: demo\nbase: missing.gguf\ndata:\n  train: train.jsonl\n"), 0o644)
	wantCleanError(t, cli(t, "data", "inspect", recipe), recipe, filepath.Join(dir, "missing.gguf"), "no such file")
}

// TestDataInspectTableLabels: a CSV with a byte-order mark and columns
// text,category, sorted by label (as such files ship): unmapped, it is
// refused in one line naming the columns and the mapping to give, not
// read as plain text; mapped, the report counts the labels, the records
// per label, the labels on one side only and the imbalance, and notes the
// byte-order mark.
func TestDataInspectTableLabels(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("\uFEFFtext,category\n")
	counts := map[string]int{"activate_card": 12, "card_lost": 6, "exchange_rate": 3, "refund_late": 1}
	for _, label := range []string{"activate_card", "card_lost", "exchange_rate", "refund_late"} {
		for i := range counts[label] {
			fmt.Fprintf(&b, "\"request %d about %s, please help\",%s\n", i, strings.ReplaceAll(label, "_", " "), label)
		}
	}
	data := filepath.Join(dir, "banking.csv")
	os.WriteFile(data, []byte(b.String()), 0o644)
	wantCleanError(t, cli(t, "data", "inspect", data), data, "columns text, category", "ignoring category", "--field prompt=text --field response=category", "data.fields")
	// train refuses it likewise, before making a folder.
	recipe := filepath.Join(dir, "r.yaml")
	os.WriteFile(recipe, []byte("name: bank\nbase: "+shared.Path(t, "models/stories260K.gguf")+"\ndata:\n  train: banking.csv\n"), 0o644)
	wantCleanError(t, cli(t, "train", recipe, "--out", filepath.Join(dir, "run")), "columns text, category", "--field prompt=text")
	// --format text says the text column alone is meant.
	if r := cli(t, "data", "inspect", data, "--format", "text"); r.code != 0 {
		t.Fatalf("--format text: %s", r.stderr)
	}

	r := cli(t, "data", "inspect", data, "--field", "prompt=text", "--field", "response=category", "--field", "label=category", "--eval-ratio", "0.3", "--seed", "1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"labels: 4 (training records per label: min ", "fewest training records: ", "imbalance max/min ", "note: " + data + ": starts with a UTF-8 byte-order mark"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	j := cli(t, "data", "inspect", data, "--field", "prompt=text", "--field", "response=category", "--field", "label=category", "--eval-ratio", "0.3", "--seed", "1", "--json")
	var rep struct {
		Labels struct {
			Labels, Min, Median, Max int
			Imbalance                float64
			Train, Eval              map[string]int
			OnlyEval                 []string `json:"only_eval"`
			OnlyEvalN                int      `json:"only_eval_count"`
		}
		Notes []string
	}
	if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, j.stdout)
	}
	l := rep.Labels
	total := 0
	for label, n := range l.Train {
		total += n + l.Eval[label]
	}
	for label, n := range l.Eval {
		if l.Train[label] == 0 {
			total += n
		}
	}
	if l.Labels != 4 || total != 22 || l.Max < l.Min || l.Imbalance != float64(l.Max)/float64(l.Min) || len(rep.Notes) != 1 {
		t.Fatalf("labels %+v, notes %q", l, rep.Notes)
	}
	// refund_late's one record is in eval (seed 1): a label training
	// never shows.
	if l.Eval["refund_late"] != 1 || (l.OnlyEvalN != 1 || l.OnlyEval[0] != "refund_late" || !strings.Contains(r.stdout, "only in eval (training never shows them): 1: refund_late")) {
		t.Fatalf("refund_late is only in eval: %+v\n%s", l, r.stdout)
	}
	t.Logf("\n%s", r.stdout)
}

// TestDataInspectLongReferences: as eval does before generating, data
// inspect of a recipe warns when reference answers of the eval cases are
// longer than max_tokens in the model's tokens (a label far longer than
// the suite's 6 tokens in stories260K's): how many, the longest, the
// max_tokens that fits them, and which contestants (one with its own,
// roomier max_tokens is not named, nor one constrained to the labels,
// whose max_tokens holds the longest). Raised to the value it names, the
// warning goes.
func TestDataInspectLongReferences(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	var train, eval strings.Builder
	for i, l := range []string{"yes", "no", "yes", "no", "yes", "no"} {
		fmt.Fprintf(&train, `{"prompt": "Q: message %d\nA:", "completion": " %s"}`+"\n", i, l)
	}
	long := "request_refund_for_a_cancelled_order_that_never_arrived"
	for i, l := range []string{"yes", long, "no"} {
		fmt.Fprintf(&eval, `{"prompt": "Q: question %d\nA:", "completion": " %s"}`+"\n", i, l)
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(train.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(eval.String()), 0o644)
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(`name: labels
base: missing.gguf
data:
  train: train.jsonl
  eval: eval.jsonl
  template: none
  seq_len: 64
eval:
  contestants:
    - {name: base}
    - {name: tuned, adapter: tuned}
    - {name: roomy, generation: {max_tokens: 200}}
    - {name: chooser, generation: {choices: labels}}
  generation: {max_tokens: 6}
`), 0o644)

	// --model: the recipe's base need not resolve.
	r := cli(t, "data", "inspect", recipe, "--model", model, "--json")
	var out struct {
		Warnings       []string
		LongReferences *struct {
			Longer, Of, Longest int
			MaxTokens           int `json:"max_tokens"`
			Contestants         []string
		} `json:"long_references"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s%s", r.code, err, r.stdout, r.stderr)
	}
	lr := out.LongReferences
	if lr == nil || lr.Longer != 1 || lr.Of != 3 || lr.Longest <= 6 || lr.MaxTokens != 6 || strings.Join(lr.Contestants, ",") != "base,tuned" {
		t.Fatalf("long references: %+v (warnings %q)", lr, out.Warnings)
	}
	fits := lr.Longest + 1

	// Without --model, the recipe's base (here resolved to the file).
	os.WriteFile(recipe, bytes.Replace(must(os.ReadFile(recipe)), []byte("base: missing.gguf"), []byte("base: "+model), 1), 0o644)
	r = cli(t, "data", "inspect", recipe)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := fmt.Sprintf("warning: 1 of 3 reference answers of the eval cases are longer than max_tokens (6, contestants base,tuned) in the base's tokens, the longest %d: eval would cut right answers off and score them wrong; max_tokens %d fits them", lr.Longest, fits)
	if !strings.Contains(r.stdout, want) {
		t.Fatalf("output lacks %q:\n%s", want, r.stdout)
	}
	r = cli(t, "data", "inspect", recipe, "--set", fmt.Sprintf("eval.generation.max_tokens=%d", fits))
	if r.code != 0 || strings.Contains(r.stdout, "max_tokens") {
		t.Fatalf("with max_tokens %d: exit %d, still warns:\n%s%s", fits, r.code, r.stdout, r.stderr)
	}
}
