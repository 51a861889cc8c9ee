package serve

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// writeRun makes a finished run folder by hand: run.json, recipe.yaml
// (template chatml, a system prompt, a stop string) and adapter.gguf.
func writeRun(t *testing.T, dir, base string, seed uint64, published string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(map[string]any{"recipe": filepath.Join(dir, "recipe.yaml"), "base": map[string]string{"ref": base, "path": base}, "state": "finished"})
	recipe := "name: support\nbase: " + base + "\ndata:\n  train: train.jsonl\n  template: chatml\n  system: Answer in one short sentence.\neval:\n  generation:\n    stop: [\"\\n\\n\"]\n"
	files := map[string]string{"run.json": string(rec), "recipe.yaml": recipe}
	if published != "" {
		files["publish.json"] = `{"model": "` + published + `:latest", "host": "http://127.0.0.1:11434", "from": "x", "as": "merged", "template": "", "smoke": {}}`
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRandomAdapter(t, base, filepath.Join(dir, "adapter.gguf"), seed)
}

// TestResolveAndRecipe: run folders, sweep trials, adapter files and
// published names resolve to the adapters and names they should, and a
// run's adapter answers with the run's chat template and system prompt.
func TestResolveAndRecipe(t *testing.T) {
	base := shared.Path(t, smolLM2)
	root := t.TempDir()
	runDir := filepath.Join(root, "runs", "support", "20261205-2330")
	writeRun(t, runDir, base, 1, "support-bot")
	sweep := filepath.Join(root, "sweeps", "support", "20261206-0100")
	writeRun(t, filepath.Join(sweep, "trials", "000"), base, 2, "")
	if err := os.MkdirAll(filepath.Join(sweep, "trials", "001"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sweep, "sweep.json"), []byte(`{"name": "sweep-a", "trials": [{"index": 0, "sets": ["lora.rank=4"]}, {"index": 1, "sets": ["lora.rank=8"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(root, "legal-v2.gguf")
	writeRandomAdapter(t, base, loose, 3)

	ctx := context.Background()
	entries, err := Resolve(ctx, []string{runDir, sweep, loose, "bot=support-bot"}, ResolveOptions{Runs: filepath.Join(root, "runs")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name+"="+strings.TrimPrefix(e.Adapter, root))
	}
	want := "support=/runs/support/20261205-2330/adapter.gguf sweep-a/000=/sweeps/support/20261206-0100/trials/000/adapter.gguf legal-v2=/legal-v2.gguf bot=/runs/support/20261205-2330/adapter.gguf"
	if strings.Join(got, " ") != want {
		t.Fatalf("resolved\n  %s\nwant\n  %s", strings.Join(got, " "), want)
	}
	if e := entries[0]; e.Template != "chatml" || e.System != "Answer in one short sentence." || len(e.Stop) != 1 || e.Base != base {
		t.Fatalf("the run's entry lost its recipe: %+v", e)
	}
	runs := ResolveOptions{Runs: filepath.Join(root, "runs")}
	for _, bad := range []struct {
		refs []string
		says string
	}{
		{[]string{runDir, runDir}, `two adapters are named "support"`},
		{[]string{"nobody-published-this"}, "no run under"},
		{[]string{filepath.Join(root, "missing.gguf")}, "no such file"},
		{[]string{filepath.Join(sweep, "trials", "001")}, "not a run folder"},
	} {
		if _, err := Resolve(ctx, bad.refs, runs); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%v: error %v, want one saying %q", bad.refs, err, bad.says)
		}
	}
	if es, err := Resolve(ctx, []string{"one=" + sweep}, runs); err != nil || es[0].Name != "one" {
		t.Fatalf("a sweep of one finished trial, named: %v %v", es, err)
	}

	// The run's adapter answers with chatml and its system prompt, as
	// training rendered its conversations.
	e, err := New(Options{Base: base, BaseName: "base", Adapters: entries[:1], Sequences: 2, Context: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := e.Submit(ctx, Request{Model: "support", Messages: msgs(prompts[0]), MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	for range s.Pieces() {
	}
	res, err := s.Result()
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(base, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := llama.LoadAdapter(m, entries[0].Adapter)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	text, err := llama.ApplyTemplate("chatml", []llama.Message{{Role: "system", Content: "Answer in one short sentence."}, {Role: "user", Content: prompts[0]}}, true)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.PromptTokens != len(toks) {
		t.Fatalf("served prompt of %d tokens; chatml with the run's system prompt is %d", res.PromptTokens, len(toks))
	}
	lctx, err := llama.NewContext(m, llama.ContextOptions{Context: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lctx.Close()
	if err := lctx.SetAdapter(a, 1); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if _, err := llama.Generate(ctx, lctx, toks, llama.GenerateOptions{MaxTokens: 12}, func(p string) { sb.WriteString(p) }); err != nil {
		t.Fatal(err)
	}
	wantText := sb.String()
	if i := strings.Index(wantText, "\n\n"); i >= 0 {
		wantText = wantText[:i] // the recipe's stop string
	}
	if res.Text != wantText {
		t.Fatalf("served %q, in-process with the run's template %q", res.Text, wantText)
	}
}

// TestStopStringsStream: text that may be the start of a stop string is
// held back until it is not; a stop string ends the answer before it.
func TestStopStringsStream(t *testing.T) {
	s := &Stream{pieces: make(chan string, 16), stop: []string{"END", "\n\n"}}
	q := &seq{s: s}
	var sent []string
	feed := func(p string) int {
		q.text = append(q.text, p...)
		if cut := firstStop(q.text, s.stop); cut >= 0 {
			q.text = q.text[:cut]
			q.flush(true)
			return 1
		}
		q.flush(false)
		return 0
	}
	for _, p := range []string{"Hello", " E", "N", "d of", " it\n", "x\n", "\nmore"} {
		if feed(p) == 1 {
			break
		}
	}
	close(s.pieces)
	for p := range s.pieces {
		sent = append(sent, p)
	}
	if got := strings.Join(sent, "|"); got != "Hello| |ENd of| it|\nx" {
		t.Fatalf("pieces %q", got)
	}
	// A character cut in two is held back whole.
	s2 := &Stream{pieces: make(chan string, 4)}
	q2 := &seq{s: s2, text: []byte("caf\xc3")}
	q2.flush(false)
	q2.text = append(q2.text, 0xa9)
	q2.flush(false)
	close(s2.pieces)
	var got2 []string
	for p := range s2.pieces {
		got2 = append(got2, p)
	}
	if strings.Join(got2, "|") != "caf|é" {
		t.Fatalf("pieces %q", got2)
	}
}
