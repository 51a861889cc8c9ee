// Command bencheval measures eval's local decoding on a real model: the
// customer-support recipe's eval cases, rendered with SmolLM2-135M-
// Instruct's chat template exactly as `finetune eval` renders them,
// repeated up to -cases, answered by two local contestants, the base and
// the base with a LoRA adapter (r16, alpha 32 on the seven projections,
// random but seeded, or -adapter), through evals.Run as `finetune eval`
// runs them, greedy, at most -max-tokens tokens each. It prints the wall
// time, the generated tokens per second over both contestants, each
// contestant's latencies and, beside them, the speed of one stream decoded
// alone the way `finetune generate` decodes it (base and adapter). Run it
// through `make bench-eval` (BENCH_EVAL_FLAGS='-cases 300' is the issue's
// full case).
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/cpuload"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

func main() {
	nCases := flag.Int("cases", 60, "eval cases per contestant (the recipe's 100, repeated or cut to this many)")
	maxTokens := flag.Int("max-tokens", 24, "most tokens per answer")
	threads := flag.Int("threads", 0, "decoding threads (0: every core)")
	recipe := flag.String("recipe", "recipes/customer-support.yaml", "recipe whose eval split gives the cases")
	model := flag.String("model", "", "base model (default: SmolLM2-135M-Instruct from the shared folder)")
	adapter := flag.String("adapter", "", "LoRA adapter of the tuned contestant (default: a random r16 one on the seven projections)")
	single := flag.Int("single", 4, "cases decoded one stream at a time for the single-stream speed (0: skip)")
	labels := flag.Bool("choices", false, "constrain answers to the cases' intent labels (generation.choices)")
	flag.Parse()
	if err := run(*nCases, *maxTokens, *threads, *recipe, *model, *adapter, *single, *labels); err != nil {
		fmt.Fprintln(os.Stderr, "bencheval:", err)
		os.Exit(1)
	}
}

func run(nCases, maxTokens, threads int, recipePath, model, adapter string, single int, labels bool) error {
	if model == "" {
		dir := shared.Dir()
		if dir == "" {
			return fmt.Errorf("no shared folder (set FINETUNE_SHARED or put shared/ beside the checkout), so no SmolLM2; or give -model")
		}
		model = filepath.Join(dir, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
	}
	r, err := recipes.Load(recipePath, nil)
	if err != nil {
		return err
	}
	cases, _, err := runs.Cases(r, model)
	if err != nil {
		return err
	}
	for i := 0; len(cases) < nCases; i++ {
		cases = append(cases, cases[i])
	}
	cases = cases[:nCases]
	tmp, err := os.MkdirTemp("", "bencheval")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if adapter == "" {
		adapter = filepath.Join(tmp, "adapter.gguf")
		if err := randomAdapter(model, adapter); err != nil {
			return err
		}
	}
	s := evals.Settings{MaxTokens: maxTokens}
	if labels {
		seen := map[string]bool{}
		for _, c := range cases {
			if l := c.Label; l != "" && !seen[l] {
				seen[l] = true
				s.Choices = append(s.Choices, l)
			}
		}
		if len(s.Choices) == 0 {
			s.Choices = []string{"refund_request", "wifi_connection_issue", "other"}
		}
	}
	fmt.Printf("%s: %d cases x {base, tuned}, max_tokens %d, %d threads on %d cores, choices %v\n",
		filepath.Base(model), len(cases), s.MaxTokens, max(threads, 0), runtime.NumCPU(), len(s.Choices) > 0)

	base, err := evals.NewLocal("base", evals.LocalOptions{Model: model, Settings: s, Threads: threads})
	if err != nil {
		return err
	}
	defer base.Close()
	tuned, err := evals.NewLocal("tuned", evals.LocalOptions{Model: model, Settings: s, Threads: threads, Adapters: []evals.AdapterSpec{{Path: adapter}}})
	if err != nil {
		return err
	}
	defer tuned.Close()
	suite := evals.Suite{Cases: cases, Metrics: []evals.Metric{{Name: "rouge_l", Kind: evals.RougeL}}}
	start := time.Now()
	res, err := evals.Run(context.Background(), suite, []evals.Contestant{base, tuned}, evals.RunOptions{})
	if err != nil {
		return err
	}
	wall := time.Since(start)
	gen, prompt := 0, 0
	for _, c := range res.Contestants {
		gen += c.Usage.CompletionTokens
		prompt += c.Usage.PromptTokens
		fmt.Printf("  %-6s %4d answers, %6d prompt tokens, %5d generated (%.1f per answer), latency p50 %.2f s, p95 %.2f s, %d failed\n",
			c.Name, c.Answered, c.Usage.PromptTokens, c.Usage.CompletionTokens, float64(c.Usage.CompletionTokens)/float64(max(1, c.Answered)),
			c.LatencyP50MS/1000, c.LatencyP95MS/1000, c.Failed)
	}
	fmt.Printf("eval: %.1f s wall, %.1f generated tokens/s over both, %.0f prompt tokens/s\n", wall.Seconds(), float64(gen)/wall.Seconds(), float64(prompt)/wall.Seconds())
	for _, l := range []*evals.Local{base, tuned} {
		printStats(l.Name(), l.Stats())
	}
	base.Close()
	tuned.Close()

	if single > 0 {
		for _, ad := range []string{"", adapter} {
			tps, err := oneStream(model, ad, cases[:min(single, len(cases))], maxTokens, threads)
			if err != nil {
				return err
			}
			name := "base"
			if ad != "" {
				name = "tuned"
			}
			fmt.Printf("one stream alone (as finetune generate), %s: %.1f generated tokens/s\n", name, tps)
		}
	}
	return nil
}

// oneStream decodes the cases one after the other, one stream each, as
// `finetune generate` does, and returns the generated tokens per second of
// generation time (prompts excluded, as generate's own figure).
func oneStream(model, adapter string, cases []evals.Case, maxTokens, threads int) (float64, error) {
	path := model
	var ads []string
	if adapter != "" {
		ads = []string{adapter}
	}
	path, err := llama.BaseFor(model, ads)
	if err != nil {
		return 0, err
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	longest := 0
	for _, c := range cases {
		longest = max(longest, len(c.PromptTokens))
	}
	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: longest + maxTokens + 1, Threads: threads})
	if err != nil {
		return 0, err
	}
	defer ctx.Close()
	if adapter != "" {
		a, err := llama.LoadAdapter(m, adapter)
		if err != nil {
			return 0, err
		}
		defer a.Close()
		if err := ctx.SetAdapter(a, 1); err != nil {
			return 0, err
		}
	}
	n, d := 0, time.Duration(0)
	for _, c := range cases {
		// As eval does: only the cores other work leaves free (ggml's
		// workers spin while they wait for each other).
		ctx.SetThreads(cpuload.Threads(threads))
		st, err := llama.Generate(context.Background(), ctx, c.PromptTokens, llama.GenerateOptions{MaxTokens: maxTokens}, nil)
		if err != nil {
			return 0, err
		}
		n += st.GeneratedTokens
		d += st.GenerateTime
	}
	return float64(n) / d.Seconds(), nil
}

// randomAdapter writes an r16, alpha 32 adapter on the seven projections
// of every layer of model: A uniform in ±1/sqrt(n_in), B small, seeded, so
// the tuned contestant answers a little differently from the base.
func randomAdapter(model, out string) error {
	f, err := llama.OpenGGUF(model)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(7, 26))
	l := &adapters.LoRA{Architecture: f.Architecture(), Alpha: 32}
	const rank = 16
	for _, t := range f.Tensors {
		if !isProjection(t) {
			continue
		}
		nIn, nOut := int(t.Dims[0]), int(t.Dims[1])
		p := adapters.Pair{Base: t.Name, NIn: nIn, NOut: nOut, Rank: rank, A: make([]float32, nIn*rank), B: make([]float32, rank*nOut)}
		for i := range p.A {
			p.A[i] = float32((rng.Float64()*2 - 1) / float64(nIn))
		}
		for i := range p.B {
			p.B[i] = float32((rng.Float64()*2 - 1) * 0.02)
		}
		l.Pairs = append(l.Pairs, p)
	}
	return adapters.Write(out, l)
}

func isProjection(t gguf.TensorInfo) bool {
	var blk int
	var kind string
	if _, err := fmt.Sscanf(t.Name, "blk.%d.%s", &blk, &kind); err != nil {
		return false
	}
	return slices.Contains([]string{"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}, kind)
}

// printStats prints where a contestant's decoding time went.
func printStats(name string, st evals.LocalStats) {
	per := func(n int, d time.Duration) float64 { return float64(n) / max(d.Seconds(), 1e-9) }
	fmt.Printf("  %-6s profile: %.1f s answering; prefill %d calls, %d tokens in %.1f s (%.0f tokens/s; shared prefix %d tokens, %d copied instead of decoded); "+
		"generation %d calls, %d tokens in %.1f s (%.1f per call, %.0f tokens/s); sampling %.2f s; %.2f threads per call, %d of %d calls beside the other contestant; %d sequences moved\n",
		name, st.Wall.Seconds(), st.PrefillCalls, st.PrefillTokens, st.PrefillTime.Seconds(), per(st.PrefillTokens, st.PrefillTime), st.PrefixTokens, st.PrefixSaved,
		st.Steps, st.StepTokens, st.StepTime.Seconds(), float64(st.StepTokens)/float64(max(st.Steps, 1)), per(st.StepTokens, st.StepTime),
		st.Sample.Seconds(), float64(st.Threads)/float64(max(1, st.PrefillCalls+st.Steps)), st.Shared, st.PrefillCalls+st.Steps, st.Moves)
}
