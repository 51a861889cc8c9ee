package evals

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// alone is what llama.Generate makes of case c decoded by itself, in a
// context of its own, one token per decode call (as `finetune generate`
// decodes): the reference for batched decoding.
func alone(t *testing.T, model string, adapter string, c Case, s Settings) []int32 {
	t.Helper()
	path := model
	var ads []string
	if adapter != "" {
		ads = []string{adapter}
	}
	path, err := llama.BaseFor(model, ads)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: len(c.PromptTokens) + s.MaxTokens + 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if adapter != "" {
		a, err := llama.LoadAdapter(m, adapter)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if err := ctx.SetAdapter(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	st, err := llama.Generate(context.Background(), ctx, c.PromptTokens, llama.GenerateOptions{MaxTokens: s.MaxTokens,
		SampleOptions: llama.SampleOptions{Choices: s.Choices}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(st.Tokens))
	for i, tok := range st.Tokens {
		out[i] = int32(tok)
	}
	return out
}

// checkBatched answers cases with a Local of seqs sequences (greedy) and
// checks every answer's tokens against the case decoded
// alone; it returns the contestant's stats.
func checkBatched(t *testing.T, model, adapter string, seqs int, cases []Case, s Settings) LocalStats {
	t.Helper()
	var ads []AdapterSpec
	if adapter != "" {
		ads = []AdapterSpec{{Path: adapter}}
	}
	l := newLocal(t, "batched", model, ads, seqs, s)
	got := map[int]Answer{}
	var order []int
	l.AnswerEach(context.Background(), cases, func(i int, a Answer, err error) {
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if _, dup := got[i]; dup {
			t.Fatalf("case %d reported twice", i)
		}
		got[i] = a
		order = append(order, i)
	})
	if len(got) != len(cases) {
		t.Fatalf("%d of %d cases reported", len(got), len(cases))
	}
	for i, c := range cases {
		want := alone(t, model, adapter, c, l.opts.Settings)
		if got[i].FinishReason == FinishStop && len(s.Stop) > 0 && len(got[i].Tokens) < len(want) {
			want = want[:len(got[i].Tokens)] // a stop string ended it
		}
		if !slices.Equal(got[i].Tokens, want) {
			t.Errorf("case %d (%d prompt tokens): batched %v %q, alone %v", i, len(c.PromptTokens), got[i].Tokens, got[i].Text, want)
		}
		if len(s.Choices) > 0 && !slices.Contains(s.Choices, got[i].Text) {
			t.Errorf("case %d: %q is not one of the choices", i, got[i].Text)
		}
	}
	// LogProbs runs in the same context after the batch: the first
	// answer token is its most likely one.
	if a := got[0]; len(s.Choices) == 0 && len(a.Tokens) > 1 {
		lp, err := l.LogProbs(context.Background(), cases[0], a.Tokens[:1])
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for tok, v := range lp {
			if v > lp[best] {
				best = tok
			}
		}
		if int32(best) != a.Tokens[1] {
			t.Errorf("LogProbs after the first answer token of case 0: most likely %d, the answer went on with %d", best, a.Tokens[1])
		}
	}
	st := l.Stats()
	t.Logf("%d cases on %d sequences, answered in the order %v: %+v", len(cases), seqs, order, st)
	if st.Steps == 0 || float64(st.StepTokens)/float64(st.Steps) <= 1 {
		t.Errorf("no decode call held more than one sequence: %+v", st)
	}
	return st
}

// storyPrefixCases are stories260K prompts of very different lengths (8 to
// about 700 tokens: the longest takes two prefill calls) that share their
// first sentence.
func storyPrefixCases(t *testing.T, model string) []Case {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opening := "Once upon a time, there was a little girl named Lily. "
	long := "She loved to play outside in the park with her friends and her dog. "
	var cases []Case
	for i, rest := range []string{"", "The cat", strings.Repeat(long, 40) + "One day", "Mom said", strings.Repeat(long, 3) + "Ben liked to",
		"There was a big tree", strings.Repeat(long, 9), "Sam had a red ball", "Lily and Tom went to the park"} {
		text := opening + rest
		toks, err := m.Tokenize(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, Case{RenderedPrompt: text, PromptTokens: toks, Source: fmt.Sprint(i)})
	}
	return cases
}

// TestContinuousBatchingMatchesAlone: nine cases of very different prompt
// lengths on three sequences (finished sequences give their slot to the
// next case, the last ones move down), sharing a prompt prefix that is
// decoded once, give exactly the tokens each case gets decoded alone by
// llama.Generate, one stream, one token per decode call: free answers that
// end at different lengths, answers constrained to choices (the grammar),
// and both with an adapter.
func TestContinuousBatchingMatchesAlone(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	cases := storyPrefixCases(t, model)
	adapter, _ := tunedAdapter(t, model)
	moves := 0
	for _, ad := range []string{"", adapter} {
		st := checkBatched(t, model, ad, 3, cases, Settings{MaxTokens: 20, Stop: []string{"."}})
		if st.PrefixSaved == 0 || st.PrefillCalls < len(cases)+2 {
			t.Errorf("the shared prefix and the long prompt's two calls were not both exercised: %+v", st)
		}
		moves += st.Moves
		checkBatched(t, model, ad, 3, cases, Settings{MaxTokens: 4, Choices: []string{"She", "Lily went", "Lily and", "The end", " ball"}})
	}
	if moves == 0 {
		t.Error("no sequence moved down to a free slot")
	}
	// Without a prefix to share (a case that starts otherwise), and the
	// cases in another order.
	mixed := append(slices.Clone(cases[1:]), Case{RenderedPrompt: "The dog", PromptTokens: []int32{1, 400, 300}})
	slices.Reverse(mixed)
	if st := checkBatched(t, model, "", 4, mixed, Settings{MaxTokens: 12}); st.PrefixSaved != 0 {
		t.Errorf("a prefix was shared though the cases share none: %+v", st)
	}
}

// TestContinuousBatchingMatchesAloneSmolLM2 is the same on the real
// SmolLM2-135M-Instruct (its chat template, a system prompt the cases
// share, its 49,152-token vocabulary): the base and the base with a LoRA
// adapter (random, seeded), free and constrained to choices.
func TestContinuousBatchingMatchesAloneSmolLM2(t *testing.T) {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var cases []Case
	for _, q := range []string{"What is the capital of Peru?", "My order arrived broken, what can I do? It was a lamp and I need it for tonight.", "hi",
		"Is a tomato a fruit? Answer in one word.", "Write a haiku about the sea.", "How many legs does a spider have?"} {
		text, err := m.ApplyChatTemplate("", []llama.Message{{Role: "system", Content: "You are a helpful assistant. Answer briefly."}, {Role: "user", Content: q}}, true)
		if err != nil {
			t.Fatal(err)
		}
		toks, err := m.Tokenize(text, true, true)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, Case{RenderedPrompt: text, PromptTokens: toks})
	}
	m.Close()
	adapter := filepath.Join(t.TempDir(), "adapter.gguf")
	writeRandomAdapter(t, model, adapter)
	for _, ad := range []string{"", adapter} {
		st := checkBatched(t, model, ad, 3, cases, Settings{MaxTokens: 10})
		if st.PrefixSaved == 0 {
			t.Errorf("the system prompt was not shared: %+v", st)
		}
		checkBatched(t, model, ad, 3, cases, Settings{MaxTokens: 4, Choices: []string{"yes", "no", "Lima", "eight"}})
	}
}

// writeRandomAdapter writes an r4 adapter on the attention's query and
// value projections of model, random but seeded, large enough to change
// answers.
func writeRandomAdapter(t *testing.T, model, out string) {
	t.Helper()
	f, err := llama.OpenGGUF(model)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	l := &adapters.LoRA{Architecture: f.Architecture(), Alpha: 8}
	for _, ti := range f.Tensors {
		if !strings.HasSuffix(ti.Name, ".attn_q.weight") && !strings.HasSuffix(ti.Name, ".attn_v.weight") {
			continue
		}
		nIn, nOut := int(ti.Dims[0]), int(ti.Dims[1])
		p := adapters.Pair{Base: ti.Name, NIn: nIn, NOut: nOut, Rank: 4, A: make([]float32, nIn*4), B: make([]float32, 4*nOut)}
		for i := range p.A {
			p.A[i] = float32(rng.NormFloat64() / float64(nIn))
		}
		for i := range p.B {
			p.B[i] = float32(rng.NormFloat64() * 0.05)
		}
		l.Pairs = append(l.Pairs, p)
	}
	if err := adapters.Write(out, l); err != nil {
		t.Fatal(err)
	}
}
