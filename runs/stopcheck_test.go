package runs

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
)

// storyRecipe writes prompt/completion data of stories260K's own kind,
// each completion cut where the base would write a full stop, and a
// recipe (template none) that trains base on it.
func storyRecipe(t *testing.T, base string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	for _, p := range [][2]string{
		{"Once upon a time", ", there was a little girl named Lily"},
		{"The cat", " was very happy"},
		{"One day, Tom went to the park", " with his mom"},
		{"Lily saw a big, red ball", " in the park"},
	} {
		line, _ := json.Marshal(map[string]string{"prompt": p[0], "completion": p[1]})
		b.Write(append(line, '\n'))
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(b.String()), 0o644)
	body := "name: stops\nbase: " + base + "\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\n  template: none\n  seq_len: 64\n" + extra
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	return p
}

// warnings are the warning lines a recorder holds.
func warnings(h *recorder) []string {
	var ws []string
	for _, r := range h.records {
		if r.Level == slog.LevelWarn {
			ws = append(ws, r.Message)
		}
	}
	return ws
}

func TestStopCheckWarnsWhenTheBaseNeverStops(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := filepath.Dir(storyRecipe(t, model, ""))
	r := recipe(t, dir, mustRead(t, filepath.Join(dir, "recipe.yaml")), "train.max_steps=1", "train.threads=1")
	var h recorder
	out := filepath.Join(t.TempDir(), "run")
	run, _, err := Start(context.Background(), r, TrainOptions{Out: out, Logger: slog.New(&h)})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	var w string
	for _, m := range warnings(&h) {
		if strings.Contains(m, "`</s>`") {
			w = m
		}
	}
	if w == "" {
		t.Fatalf("no stop-token warning among %q", warnings(&h))
	}
	for _, want := range []string{"never produces `</s>`", "a probability of ", "(rank ", " of 512)", "add `output` to lora.targets"} {
		if !strings.Contains(w, want) {
			t.Errorf("the warning %q lacks %q", w, want)
		}
	}
	t.Log(w)
	log := mustRead(t, filepath.Join(out, LogFile))
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "never produces `</s>`") {
		t.Fatalf("train.log lacks the warning:\n%s", log)
	}
	// A recipe that already trains the output head is not told to.
	c := &StopCheck{Text: "</s>", Vocab: 512, Ends: 4, Prob: 1e-10, Rank: 400}
	if w := c.Warning(append(r.LoRA.Targets, "output")); !strings.Contains(w, "never produces") || strings.Contains(w, "add `output`") {
		t.Fatalf("with output among the targets: %q", w)
	}
}

func TestStopCheckQuietWhenTheBaseStops(t *testing.T) {
	model := stoppingStories(t)
	dir := filepath.Dir(storyRecipe(t, model, ""))
	r := recipe(t, dir, mustRead(t, filepath.Join(dir, "recipe.yaml")), "train.threads=1")
	d, err := LoadData(r, model)
	if err != nil {
		t.Fatal(err)
	}
	c, err := MeasureStop(context.Background(), model, d.Train, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *c)
	if !c.Produced() || c.Warning(r.LoRA.Targets) != "" || c.Ends != 4 || c.Examples != 4 {
		t.Fatalf("a base that stops where answers end: %+v, warning %q", *c, c.Warning(r.LoRA.Targets))
	}
	var h recorder
	if _, err := prepare(context.Background(), r, &TrainOptions{}, slog.New(&h)); err != nil {
		t.Fatal(err)
	}
	if ws := warnings(&h); len(ws) > 0 {
		t.Fatalf("warnings %q for a base that stops", ws)
	}
}

// stoppingStories writes stories260K with the output-head row of </s> set
// to the row of ".": a base that stops wherever it would end a sentence.
func stoppingStories(t *testing.T) string {
	t.Helper()
	src := shared.Path(t, "models/stories260K.gguf")
	m, err := llama.LoadModel(src, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := m.Tokenize("Lily.", false, false)
	dot, eos := toks[len(toks)-1], m.EOS()
	if m.TokenText(dot) != "." {
		t.Fatalf("%q tokenizes to %v, ending with %q", "Lily.", toks, m.TokenText(dot))
	}
	m.Close()
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	var ts []gguf.Tensor
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Name == "output.weight" {
			if ti.Type != gguf.F32 {
				t.Fatalf("output.weight is %s", ti.Type)
			}
			row := int(ti.Dims[0]) * 4
			data = append([]byte(nil), data...)
			copy(data[int(eos)*row:(int(eos)+1)*row], data[int(dot)*row:(int(dot)+1)*row])
		}
		ts = append(ts, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
	}
	out := filepath.Join(t.TempDir(), "stories-stops.gguf")
	if err := gguf.Write(out, f.KV, ts); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStopSamplesBudget(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	eos := m.EOS()
	// window builds one window of examples of the given lengths, each
	// ending with a trained EOS.
	window := func(lens ...int) lora.Window {
		var w lora.Window
		for s, n := range lens {
			for i := range n {
				tok, wt := int32(100+i%50), float32(0)
				if i == n-1 {
					tok, wt = eos, 1
				}
				w.Tokens, w.Weights = append(w.Tokens, tok), append(w.Weights, wt)
				w.Pos, w.Seq = append(w.Pos, int32(i)), append(w.Seq, int32(s))
			}
		}
		return w
	}
	stop, exs := stopSamples(m, []lora.Window{window(90, 40), window(1000), window(30, 20, 10, 200)}, stopBudget)
	if stop != eos {
		t.Fatalf("stop token %d, want EOS %d", stop, eos)
	}
	// The shortest first, within the budget: 10, 20, 30 and 40 tokens
	// with their ends (less the end itself, which is predicted).
	var lens []int
	total := 0
	for _, ex := range exs {
		lens = append(lens, len(ex.tokens))
		total += len(ex.tokens)
		if len(ex.ends) != 1 || ex.ends[0] != len(ex.tokens)-1 {
			t.Fatalf("ends %v of an example of %d tokens", ex.ends, len(ex.tokens))
		}
	}
	if want := []int{9, 19, 29, 39}; !equalInts(lens, want) || total > stopBudget {
		t.Fatalf("examples of %v tokens, want %v", lens, want)
	}
	// One example over the budget alone: its first token and the last ones.
	_, exs = stopSamples(m, []lora.Window{window(1000)}, stopBudget)
	if len(exs) != 1 || len(exs[0].tokens) != stopBudget || exs[0].ends[0] != stopBudget-1 || exs[0].tokens[0] != 100 {
		t.Fatalf("a long example: %d examples, %d tokens, ends %v", len(exs), len(exs[0].tokens), exs[0].ends)
	}
	// No trained end: nothing to read.
	w := window(20)
	w.Weights[19] = 0
	if _, exs := stopSamples(m, []lora.Window{w}, stopBudget); len(exs) != 0 {
		t.Fatalf("%d examples without a trained end", len(exs))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStopCheckThresholds(t *testing.T) {
	for _, c := range []struct {
		prob float64
		rank int
		want bool
	}{
		{1e-10, 422, false}, // stories260K's </s>
		{5e-5, 40, false},
		{1e-4, 40, true},
		{1e-9, 3, true}, // among the likeliest, however flat the distribution
	} {
		sc := StopCheck{Text: "</s>", Vocab: 512, Ends: 4, Prob: c.prob, Rank: c.rank}
		if got := sc.Produced(); got != c.want || (sc.Warning(nil) == "") != c.want {
			t.Errorf("prob %g rank %d of 512: produced %v, want %v", c.prob, c.rank, got, c.want)
		}
	}
	// A vocabulary where a uniform guess is under 1e-4: chance level is a
	// live row.
	for _, c := range []struct {
		prob float64
		want bool
	}{{2.8e-5, true}, {5e-6, false}} {
		sc := StopCheck{Vocab: 128256, Ends: 1, Prob: c.prob, Rank: 5000}
		if sc.Produced() != c.want {
			t.Errorf("prob %g of 128256 tokens: produced %v, want %v", c.prob, sc.Produced(), c.want)
		}
	}
}
