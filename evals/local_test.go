package evals

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

// qa are question/answer pairs nothing like TinyStories, the data the
// tuned model learns (as in lora's tests).
var qa = [][2]string{
	{"What is the capital of Peru?", "Lima."},
	{"What is 7 times 8?", "56."},
	{"Which gas do plants absorb?", "Carbon dioxide."},
	{"Who wrote Hamlet?", "Shakespeare."},
	{"What is the boiling point of water in Celsius?", "100 degrees."},
	{"What is the largest planet?", "Jupiter."},
	{"What is the chemical symbol for gold?", "Au."},
	{"How many legs does a spider have?", "Eight."},
	{"What is the square root of 81?", "Nine."},
	{"Which ocean is the largest?", "The Pacific."},
	{"What language is spoken in Brazil?", "Portuguese."},
	{"What is the freezing point of water in Fahrenheit?", "32 degrees."},
	{"Who painted the Mona Lisa?", "Leonardo da Vinci."},
	{"What is the smallest prime number?", "Two."},
	{"What is the capital of Japan?", "Tokyo."},
	{"How many continents are there?", "Seven."},
	{"What is the hardest natural mineral?", "Diamond."},
	{"Which planet is known as the red planet?", "Mars."},
	{"What is the currency of the United Kingdom?", "The pound sterling."},
	{"How many minutes are in an hour?", "Sixty."},
}

var tmpRoot string

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "evals-test")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// qaRecords are the pairs as datasets records: "Q: ...\nA:" and the answer
// with the newline that ends it.
func qaRecords() []datasets.Record {
	var recs []datasets.Record
	for i, p := range qa {
		recs = append(recs, datasets.Record{Messages: []datasets.Message{
			{Role: "user", Content: "Q: " + p[0] + "\nA:"},
			{Role: "assistant", Content: " " + p[1] + "\n"},
		}, Source: fmt.Sprintf("qa.jsonl:%d", i+1)})
	}
	return recs
}

// qaCases renders the pairs into eval cases through datasets, as the eval
// command will: plain prompt and completion, no chat template (stories260K
// has none).
func qaCases(t testing.TB, model string) []Case {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := datasets.NewRenderer(m, datasets.RenderOptions{Template: datasets.TemplateNone})
	if err != nil {
		t.Fatal(err)
	}
	var cases []Case
	for _, rec := range qaRecords() {
		c, err := r.Case(rec)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return cases
}

var tuned struct {
	once    sync.Once
	adapter string
	loss    []LossPoint
	err     error
}

// tunedAdapter fine-tunes stories260K on the pairs once per test binary
// (rendered and packed by datasets, trained by lora) and returns the
// adapter and its loss curve.
func tunedAdapter(t testing.TB, model string) (string, []LossPoint) {
	t.Helper()
	tuned.once.Do(func() {
		start := time.Now()
		m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
		if err != nil {
			tuned.err = err
			return
		}
		defer m.Close()
		r, err := datasets.NewRenderer(m, datasets.RenderOptions{Template: datasets.TemplateNone})
		if err != nil {
			tuned.err = err
			return
		}
		var exs []datasets.Example
		for _, rec := range qaRecords() {
			ex, err := r.Render(rec)
			if err != nil {
				tuned.err = err
				return
			}
			// stories260K never saw </s> and cannot learn it (lora's
			// tests say why): the answers end at their newline, which
			// the contestants' stop string catches.
			for _, e := range ex {
				e.Weights[len(e.Weights)-1] = 0
			}
			exs = append(exs, ex...)
		}
		var windows []lora.Window
		for _, w := range datasets.Pack(exs, 128) {
			windows = append(windows, lora.Window{Tokens: w.Tokens, Weights: w.Weights, Pos: w.Pos, Seq: w.Seq})
		}
		dir := filepath.Join(tmpRoot, "run")
		res, err := lora.Train(context.Background(), model, lora.Config{
			Rank: 16, Alpha: 32, LearningRate: 1e-2, Schedule: "cosine", WarmupSteps: 10,
			MaxSteps: 240, Seed: 1, Threads: 1, Files: lora.Files{Checkpoint: filepath.Join(dir, "checkpoint.gguf"), Metrics: filepath.Join(dir, "metrics.jsonl"), Adapter: filepath.Join(dir, "adapter.gguf")},
		}, lora.Data{Train: windows}, nil)
		if err != nil {
			tuned.err = err
			return
		}
		tuned.adapter = res.Adapter
		// The loss curve as the report gets it from a run folder.
		if tuned.loss, tuned.err = LoadLossCurve(filepath.Join(dir, "metrics.jsonl")); tuned.err != nil {
			return
		}
		if len(tuned.loss) != res.Steps {
			tuned.err = fmt.Errorf("metrics.jsonl has %d steps, the run %d", len(tuned.loss), res.Steps)
			return
		}
		t.Logf("trained the adapter in %v: loss %.3f -> %.3f", time.Since(start).Round(time.Millisecond), tuned.loss[0].Loss, tuned.loss[len(tuned.loss)-1].Loss)
	})
	if tuned.err != nil {
		t.Fatal(tuned.err)
	}
	return tuned.adapter, tuned.loss
}

func newLocal(t testing.TB, name, model string, adapters []AdapterSpec, seqs int, s Settings) *Local {
	t.Helper()
	l, err := NewLocal(name, LocalOptions{Model: model, Adapters: adapters, Sequences: seqs, Threads: 1, Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

var qaSettings = Settings{MaxTokens: 24, Stop: []string{"\n"}}

// TestLocalBaseVsTuned evaluates stories260K against itself with an
// adapter trained in the test: the tuned model answers the questions, the
// base does not, and the difference is significant.
func TestLocalBaseVsTuned(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	adapter, loss := tunedAdapter(t, model)
	cases := qaCases(t, model)
	base := newLocal(t, "base", model, nil, 8, qaSettings)
	tuned := newLocal(t, "tuned", model, []AdapterSpec{{Path: adapter}}, 8, qaSettings)
	suite := Suite{Cases: cases, Metrics: []Metric{
		{Name: "exact", Kind: ExactMatch},
		{Name: "f1", Kind: TokenF1},
		{Name: "rouge", Kind: RougeL},
	}}
	cacheDir := t.TempDir()
	start := time.Now()
	res, err := Run(context.Background(), suite, []Contestant{base, tuned}, RunOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 cases × 2 local contestants in %v", time.Since(start).Round(time.Millisecond))
	b, tu := res.Contestant("base"), res.Contestant("tuned")
	t.Logf("exact: base %.2f, tuned %.2f; f1: base %.2f, tuned %.2f", b.Scores["exact"].Value, tu.Scores["exact"].Value, b.Scores["f1"].Value, tu.Scores["f1"].Value)
	for i, c := range res.Cases[:3] {
		t.Logf("case %d %q: base %q, tuned %q", i, c.Reference, c.Answers[0].Text, c.Answers[1].Text)
	}
	if tu.Scores["exact"].Value < 0.85 || b.Scores["exact"].Value > 0.05 {
		t.Errorf("exact match: tuned %.2f (want >= 0.85), base %.2f (want 0)", tu.Scores["exact"].Value, b.Scores["exact"].Value)
	}
	cmp := res.Compare("tuned", "base", "exact")
	if !cmp.Significant() || cmp.Low < 0.5 || cmp.Wins < 17 || cmp.Losses != 0 {
		t.Errorf("tuned vs base: %+v", *cmp)
	}
	if tu.Kind != "local" || len(tu.Adapters) != 1 || tu.Usage.PromptTokens != sumPromptTokens(cases) || tu.Usage.CompletionTokens == 0 {
		t.Errorf("tuned info %+v usage %+v", tu.Info, tu.Usage)
	}
	g, err := ParseGate("tuned.exact - base.exact >= 0.5")
	if err != nil {
		t.Fatal(err)
	}
	if ok, line, err := g.Check(res); !ok || err != nil {
		t.Errorf("gate: %s %v", line, err)
	}
	out := t.TempDir()
	if err := WriteReports(out, res, ReportExtras{Title: "stories260K: base vs tuned", Loss: loss}); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(out, "report.html"))
	if !strings.Contains(string(html), "training loss") {
		t.Error("the report has no loss curve")
	}

	// The answers are cached under the weights' digests: the same run asks
	// nothing, and a tuned contestant with another adapter scale is asked
	// again.
	res2, err := Run(context.Background(), suite, []Contestant{base, tuned}, RunOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if c := res2.Contestant("tuned"); c.Cached != len(cases) || res2.Contestant("base").Cached != len(cases) {
		t.Errorf("second run: %d and %d answers from the cache, want all", res2.Contestant("base").Cached, c.Cached)
	}
	half := newLocal(t, "half", model, []AdapterSpec{{Path: adapter, Scale: 0.5}}, 8, qaSettings)
	res3, err := Run(context.Background(), suite, []Contestant{half}, RunOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if c := res3.Contestant("half"); c.Cached != 0 {
		t.Errorf("an adapter at scale 0.5 got %d answers from the cache of scale 1", c.Cached)
	}
}

func sumPromptTokens(cases []Case) int {
	n := 0
	for _, c := range cases {
		n += len(c.PromptTokens)
	}
	return n
}

// storyCases are TinyStories prompts of very different lengths, some long
// enough that a wave's prompts take several decode calls (512 tokens
// each).
func storyCases(t testing.TB, model string, n int) []Case {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	starts := []string{"Once upon a time", "The cat", "Lily and Tom went to the park", "One day, a little bird", "Sam had a red ball", "Mom said", "Ben liked to", "There was a big tree"}
	long := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. "
	var cases []Case
	for i := 0; i < n; i++ {
		text := starts[i%len(starts)]
		if i%5 == 3 {
			text = strings.Repeat(long, 1+i%4) + text // 30 to 120 tokens
		}
		toks, err := m.Tokenize(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, Case{Prompt: []Message{{Role: "user", Content: text}}, RenderedPrompt: text, PromptTokens: toks, Reference: "", Source: fmt.Sprint(i)})
	}
	return cases
}

// TestBatchingGivesTheSameAnswers: several sequences per decode must not
// change a single answer: greedy decoding of every case is the same with
// 1, 5 and 16 sequences per wave, stop strings and token limits included.
func TestBatchingGivesTheSameAnswers(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	cases := storyCases(t, model, 21)
	s := Settings{MaxTokens: 40, Stop: []string{"park."}}
	var runs [][]Answer
	for _, seqs := range []int{1, 5, 16} {
		l := newLocal(t, "story", model, nil, seqs, s)
		as, errs := l.AnswerBatch(context.Background(), cases)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%d sequences, case %d: %v", seqs, i, err)
			}
		}
		runs = append(runs, as)
	}
	stopped := 0
	for i := range cases {
		for k := 1; k < len(runs); k++ {
			if runs[k][i].Text != runs[0][i].Text || runs[k][i].Usage != runs[0][i].Usage {
				t.Errorf("case %d: %q (%+v) with batching, %q (%+v) without", i, runs[k][i].Text, runs[k][i].Usage, runs[0][i].Text, runs[0][i].Usage)
			}
		}
		a := runs[0][i]
		if strings.Contains(a.Text, "park.") {
			t.Errorf("case %d: the stop string is in the answer %q", i, a.Text)
		}
		if a.Usage.CompletionTokens < 40 {
			stopped++
		}
		if a.Usage.CompletionTokens > 40 || a.Usage.PromptTokens != len(cases[i].PromptTokens) {
			t.Errorf("case %d: usage %+v", i, a.Usage)
		}
	}
	if stopped == 0 || stopped == len(cases) {
		t.Errorf("%d of %d answers stopped before 40 tokens: the test should see both stops and full answers", stopped, len(cases))
	}
	// A single Answer call (what a judge gets) agrees too.
	l := newLocal(t, "story", model, nil, 4, s)
	one, err := l.Answer(context.Background(), cases[3])
	if err != nil || one.Text != runs[0][3].Text {
		t.Errorf("Answer: %q %v, want %q", one.Text, err, runs[0][3].Text)
	}
	t.Logf("%q", runs[0][0].Text)
}

func TestLocalRefusesBadCases(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	l := newLocal(t, "base", model, nil, 4, Settings{MaxTokens: 4})
	cases := []Case{
		{PromptTokens: []int32{1, 600}},                             // outside the 512-token vocabulary
		{Prompt: []Message{{Role: "user", Content: "hi"}}},          // no tokens, no template
		{PromptTokens: make([]int32, 3000)},                         // longer than the context (2048)
		{RenderedPrompt: "Once upon a time", Reference: "anything"}, // tokenized here
	}
	as, errs := l.AnswerBatch(context.Background(), cases)
	for i, want := range []string{"outside the vocabulary", "no chat template", "context holds 2048", ""} {
		if want == "" {
			if errs[i] != nil || as[i].Usage.CompletionTokens != 4 {
				t.Errorf("case %d: %v, %+v", i, errs[i], as[i])
			}
			continue
		}
		if errs[i] == nil || !strings.Contains(errs[i].Error(), want) {
			t.Errorf("case %d: err %v, want it to mention %q", i, errs[i], want)
		}
	}
	if _, err := NewLocal("x", LocalOptions{Model: filepath.Join(t.TempDir(), "missing.gguf")}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing model: %v", err)
	}
}

// BenchmarkLocalBatching measures cases/s of the local contestant on
// stories260K with 1 (no batching), 4, 8 and 16 sequences per decode:
//
//	go test ./evals/ -run '^$' -bench LocalBatching -benchtime 3x
//
// BenchmarkLocalBatching/wide does the same on a random model whose
// weights, not its attention, dominate the work (8 layers of width 512,
// Q8_0, 26M parameters): the shape of a real model, in miniature.
func BenchmarkLocalBatching(b *testing.B) {
	model := shared.Path(b, "models/stories260K.gguf")
	b.Run("stories260K", func(b *testing.B) { benchBatching(b, model, storyCases(b, model, 32)) })
	wide := filepath.Join(b.TempDir(), "wide.gguf")
	if err := testmodel.Write(wide, testmodel.Config{Layers: 8, Embd: 512, Heads: 8, KVHeads: 8, FF: 1376, Context: 512, Type: "q8_0", VocabFrom: model, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	b.Run("wide", func(b *testing.B) { benchBatching(b, wide, storyCases(b, model, 32)) })
}

func benchBatching(b *testing.B, model string, cases []Case) {
	for _, seqs := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprintf("sequences=%d", seqs), func(b *testing.B) {
			l := newLocal(b, "story", model, nil, seqs, Settings{MaxTokens: 48})
			tokens := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				as, _ := l.AnswerBatch(context.Background(), cases)
				for _, a := range as {
					tokens += a.Usage.CompletionTokens
				}
			}
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(len(cases)*b.N)/s, "cases/s")
			b.ReportMetric(float64(tokens)/s, "tokens/s")
		})
	}
}
