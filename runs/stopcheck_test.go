package runs

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

// storyRecipe writes prompt/completion data of stories260K's own kind,
// each completion cut where the base would write a full stop, and a
// recipe with the given template ("": the model's own) that trains base on
// it.
func storyRecipe(t *testing.T, base, template string) string {
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
	body := "name: stops\nbase: " + base + "\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\n  seq_len: 64\n"
	if template != "" {
		body += "  template: " + template + "\n"
	}
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	return p
}

// warnings are the warning lines a recorder holds, but for the leakage
// warning (storyRecipe's eval file is its training file).
func warnings(h *recorder) []string {
	var ws []string
	for _, r := range h.records {
		if r.Level == slog.LevelWarn && !strings.HasPrefix(r.Message, "train/eval leakage:") {
			ws = append(ws, r.Message)
		}
	}
	return ws
}

func TestStopCheckWarnsWhenTheBaseNeverStops(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := filepath.Dir(storyRecipe(t, model, "none"))
	// Targets listed explicitly are kept: the run warns and says what to
	// add.
	r := recipe(t, dir, mustRead(t, filepath.Join(dir, "recipe.yaml")), "train.max_steps=1", "train.threads=1", "lora.targets=[attn_q, attn_v]")
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
	if !slices.Equal(run.Recipe.LoRA.Targets, []string{"attn_q", "attn_v"}) || len(run.Record.AddedTargets) > 0 {
		t.Fatalf("explicit targets changed: %q, added %q", run.Recipe.LoRA.Targets, run.Record.AddedTargets)
	}
	// A recipe that already trains the output head is not told to.
	c := &StopCheck{Text: "</s>", Vocab: 512, Ends: 4, Prob: 1e-10, Rank: 400}
	if w := c.Warning(append(r.LoRA.Targets, "output")); !strings.Contains(w, "never produces") || strings.Contains(w, "add `output`") {
		t.Fatalf("with output among the targets: %q", w)
	}
}

// TestDefaultTargetsLearnToStop: a recipe that leaves lora.targets to its
// default, on a base that never produces its stop token (stories260K's
// </s>), trains `output` too: the run says so in one line (terminal and
// train.log), records it in run.json, recipe.yaml and adapter.json, and
// the tuned model's answers stop.
func TestDefaultTargetsLearnToStop(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	qa := [][2]string{
		{"What is the capital of Peru?", "Lima."}, {"What is 7 times 8?", "56."}, {"Which gas do plants absorb?", "Carbon dioxide."},
		{"Who wrote Hamlet?", "Shakespeare."}, {"What is the largest planet?", "Jupiter."}, {"What is the symbol for gold?", "Au."},
		{"How many legs does a spider have?", "Eight."}, {"What is the capital of Japan?", "Tokyo."},
	}
	var b strings.Builder
	for _, p := range qa {
		line, _ := json.Marshal(map[string]string{"prompt": "Q: " + p[0] + "\nA:", "completion": " " + p[1]})
		b.Write(append(line, '\n'))
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(b.String()), 0o644)
	body := "name: stops\nbase: " + model + "\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\n  template: none\n  seq_len: 128\n" +
		"lora:\n  rank: 16\ntrain:\n  max_steps: 60\n  learning_rate: 1e-2\n  warmup_steps: 10\n  eval_every: 60\n  checkpoint_every: 60\n  threads: 1\n  seed: 1\n"
	r := recipe(t, dir, body)
	var h recorder
	out := filepath.Join(t.TempDir(), "run")
	run, res, err := Start(context.Background(), r, TrainOptions{Out: out, Logger: slog.New(&h)})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	var said []string
	for _, m := range warnings(&h) {
		if strings.Contains(m, "`</s>`") {
			said = append(said, m)
		}
	}
	if len(said) != 1 || !strings.Contains(said[0], "training `output` too") {
		t.Fatalf("want one line saying output is trained, got %q", said)
	}
	t.Log(said[0])
	if log := mustRead(t, filepath.Join(out, LogFile)); !strings.Contains(log, "training `output` too") {
		t.Fatalf("train.log lacks the line:\n%s", log)
	}
	opened, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opened.Record.AddedTargets, []string{"output"}) || !slices.Contains(opened.Recipe.LoRA.Targets, "output") {
		t.Fatalf("run.json added %q, recipe.yaml targets %q", opened.Record.AddedTargets, opened.Recipe.LoRA.Targets)
	}
	if info := mustRead(t, filepath.Join(out, "adapter.json")); !strings.Contains(info, `"added_targets": [`) {
		t.Fatalf("adapter.json does not record the added target:\n%s", info)
	}
	m, err := llama.LoadModel(model, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := llama.LoadAdapter(m, res.Adapter)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	stopped := 0
	for _, p := range qa {
		ctx, err := llama.NewContext(m, llama.ContextOptions{Context: 128, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := ctx.SetAdapter(a, 1); err != nil {
			t.Fatal(err)
		}
		prompt, _ := m.Tokenize("Q: "+p[0]+"\nA:", true, false)
		var ans strings.Builder
		st, err := llama.Generate(context.Background(), ctx, prompt, llama.GenerateOptions{MaxTokens: 24}, func(s string) { ans.WriteString(s) })
		ctx.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.Stop == llama.StopEndOfGeneration {
			stopped++
		} else {
			t.Logf("%q: %q (%s)", p[0], ans.String(), st.Stop)
		}
	}
	t.Logf("%d of %d answers stopped at </s>", stopped, len(qa))
	if stopped < len(qa)-1 {
		t.Fatalf("%d of %d answers stopped at </s>", stopped, len(qa))
	}
}

func TestStopCheckQuietWhenTheBaseStops(t *testing.T) {
	for _, c := range []struct {
		name, template string
		chatml         bool
	}{{"template none", "none", false}, {"ChatML", "", true}} {
		t.Run(c.name, func(t *testing.T) {
			model := editedStories(t, c.chatml, true)
			dir := filepath.Dir(storyRecipe(t, model, c.template))
			r := recipe(t, dir, mustRead(t, filepath.Join(dir, "recipe.yaml")), "train.threads=1")
			d, err := LoadData(r, model)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := MeasureStop(context.Background(), model, d.Train, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", *sc)
			if !sc.Produced() || sc.Warning(r.LoRA.Targets) != "" || sc.Ends < 3 {
				t.Fatalf("a base that stops where answers end: %+v, warning %q", *sc, sc.Warning(r.LoRA.Targets))
			}
			var h recorder
			if _, err := prepare(context.Background(), r, &TrainOptions{}, slog.New(&h)); err != nil {
				t.Fatal(err)
			}
			if ws := warnings(&h); len(ws) > 0 {
				t.Fatalf("warnings %q for a base that stops", ws)
			}
		})
	}
}

// A chat template's end-of-turn token that the base never learnt: the
// ChatML tokens of editedStories have the output-head rows of byte tokens
// stories260K never saw.
func TestStopCheckWarnsOnAnUnlearntEndOfTurn(t *testing.T) {
	model := editedStories(t, true, false)
	dir := filepath.Dir(storyRecipe(t, model, ""))
	r := recipe(t, dir, mustRead(t, filepath.Join(dir, "recipe.yaml")), "train.threads=1")
	var h recorder
	if _, err := prepare(context.Background(), r, &TrainOptions{}, slog.New(&h)); err != nil {
		t.Fatal(err)
	}
	ws := warnings(&h)
	if len(ws) != 1 || !strings.Contains(ws[0], "never produces `<|im_end|>`") || !strings.Contains(ws[0], "training `output` too") || !slices.Contains(r.LoRA.Targets, "output") {
		t.Fatalf("warnings %q (targets %q), want the one about <|im_end|> and output trained", ws, r.LoRA.Targets)
	}
	t.Log(ws[0])
}

// editedStories writes a copy of stories260K. With chatml, two byte tokens
// TinyStories never holds (<0x01>, <0x02>) become ChatML's <|im_start|>
// and <|im_end|>, and the ChatML template is embedded: end-of-turn tokens
// whose output-head rows the base never trained, as a base model's chat
// tokens. With stops, the output-head row of the stop token (<|im_end|>,
// else </s>) is set to the row of ".": a base that stops wherever it would
// end a sentence.
func editedStories(t *testing.T, chatml, stops bool) string {
	t.Helper()
	src := shared.Path(t, "models/stories260K.gguf")
	m, err := llama.LoadModel(src, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := m.Tokenize("Lily.", false, false)
	dot, stop := toks[len(toks)-1], m.EOS()
	if m.TokenText(dot) != "." {
		t.Fatalf("%q tokenizes to %v, ending with %q", "Lily.", toks, m.TokenText(dot))
	}
	m.Close()
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	kv := slices.Clone(f.KV)
	if chatml {
		const imStart, imEnd = 4, 5 // <0x01>, <0x02>
		stop = imEnd
		for i := range kv {
			switch v := kv[i].Value.(type) {
			case []string:
				if kv[i].Key == "tokenizer.ggml.tokens" {
					v = slices.Clone(v)
					if v[imStart] != "<0x01>" || v[imEnd] != "<0x02>" {
						t.Fatalf("tokens %d and %d are %q and %q", imStart, imEnd, v[imStart], v[imEnd])
					}
					v[imStart], v[imEnd] = "<|im_start|>", "<|im_end|>"
					kv[i].Value = v
				}
			case []int32:
				if kv[i].Key == "tokenizer.ggml.token_type" {
					v = slices.Clone(v)
					v[imStart], v[imEnd] = 3, 3 // control
					kv[i].Value = v
				}
			}
		}
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.eot_token_id", Value: uint32(imEnd)},
			gguf.KV{Key: "tokenizer.chat_template", Value: testmodel.ChatMLTemplate})
	}
	var ts []gguf.Tensor
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Name == "output.weight" && stops {
			if ti.Type != gguf.F32 {
				t.Fatalf("output.weight is %s", ti.Type)
			}
			row := int(ti.Dims[0]) * 4
			data = slices.Clone(data)
			copy(data[int(stop)*row:(int(stop)+1)*row], data[int(dot)*row:(int(dot)+1)*row])
		}
		ts = append(ts, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
	}
	out := filepath.Join(t.TempDir(), "stories-edited.gguf")
	if err := gguf.Write(out, kv, ts); err != nil {
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
	if want := []int{9, 19, 29, 39}; !slices.Equal(lens, want) || total > stopBudget {
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
