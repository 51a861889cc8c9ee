package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llama"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runGenerate(args []string) error {
	fs := newFlags("generate")
	model := fs.String("model", "", "base model (GGUF file)")
	var adapters, scales listFlag
	fs.Var(&adapters, "adapter", "LoRA adapter (GGUF); repeat for several")
	fs.Var(&scales, "adapter-scale", "scale of each --adapter, in order (default 1)")
	prompt := fs.String("prompt", "", "prompt text")
	chat := fs.Bool("chat", false, "render the prompt as a user turn with the model's chat template")
	system := fs.String("system", "", "system message (with --chat)")
	template := fs.String("template", "", "chat template to use instead of the model's: a llama.cpp built-in name (chatml, llama2, llama3, mistral-v7, ...)")
	maxTokens := fs.Int("max-tokens", 256, "stop after this many tokens (0: until the model stops or the context is full)")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy (deterministic)")
	topP := fs.Float64("top-p", 0.95, "nucleus sampling threshold (with temperature > 0)")
	seed := fs.Uint("seed", 42, "random seed for sampling")
	threads := fs.Int("threads", runtime.NumCPU(), "CPU threads")
	device := fs.String("device", "auto", "where the model runs: auto (the first GPU, else the CPU), cpu, cuda[:N], or a device's name")
	ctxSize := fs.Int("ctx", 0, "context size in tokens (0: prompt + max tokens, at most the model's)")
	var choices listFlag
	fs.Var(&choices, "choice", "restrict the answer to exactly one of these strings (constrained decoding); repeat for each choice")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("unexpected argument %q (the prompt goes in --prompt)", pos[0])
	case *model == "":
		return usageErr("--model is required")
	case *prompt == "":
		return usageErr("--prompt is required")
	case len(scales) > len(adapters):
		return usageErr("%d --adapter-scale values for %d adapters", len(scales), len(adapters))
	case *system != "" && !*chat && *template == "":
		return usageErr("--system needs --chat")
	case *temperature < 0 || *topP < 0 || *topP > 1:
		return usageErr("--temperature must be >= 0 and --top-p within [0, 1]")
	case *seed > 1<<32-1:
		return usageErr("--seed must fit in 32 bits")
	case *maxTokens < 0:
		return usageErr("--max-tokens %d: give 0 (until the model stops or the context is full) or more", *maxTokens)
	case *ctxSize < 0:
		return usageErr("--ctx %d: give 0 (prompt + max tokens) or a context size in tokens", *ctxSize)
	case *threads < 1:
		return usageErr("--threads %d: at least 1", *threads)
	}
	adapterScales := make([]float32, len(adapters))
	for i := range adapters {
		adapterScales[i] = 1
		if i < len(scales) {
			s, err := strconv.ParseFloat(scales[i], 32)
			if err != nil {
				return usageErr("--adapter-scale %q is not a number", scales[i])
			}
			adapterScales[i] = float32(s)
		}
	}
	loadBackends()
	warnSIMD()

	path, err := llama.BaseFor(*model, adapters)
	if err != nil {
		return err
	}
	dev, err := ggml.PickDevice(*device)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{Device: dev})
	if err != nil {
		return err
	}
	defer m.Close()
	var loaded []*llama.Adapter
	defer func() {
		for _, a := range loaded {
			a.Close()
		}
	}()
	for _, path := range adapters {
		a, err := llama.LoadAdapter(m, path)
		if err != nil {
			return err
		}
		loaded = append(loaded, a)
	}

	text := *prompt
	parseSpecial := false
	if *chat || *template != "" {
		var msgs []llama.Message
		if *system != "" {
			msgs = append(msgs, llama.Message{Role: "system", Content: *system})
		}
		msgs = append(msgs, llama.Message{Role: "user", Content: *prompt})
		if text, err = m.ApplyChatTemplate(*template, msgs, true); err != nil {
			return err
		}
		parseSpecial = true
		log.Debug("chat prompt", "text", text)
	}
	tokens, err := m.Tokenize(text, true, parseSpecial)
	if err != nil {
		return err
	}
	n := *ctxSize
	if n == 0 {
		n = len(tokens) + *maxTokens + 1
		if *maxTokens == 0 || n > m.ContextLength() {
			n = m.ContextLength()
		}
	}
	if len(tokens) >= n {
		return fmt.Errorf("%s: the prompt has %d tokens, more than the context of %d tokens allows", *model, len(tokens), n)
	}
	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: n, Threads: *threads})
	if err != nil {
		return err
	}
	defer ctx.Close()
	for i, a := range loaded {
		if err := ctx.SetAdapter(a, adapterScales[i]); err != nil {
			return err
		}
	}

	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if !*chat && *template == "" {
		fmt.Print(*prompt)
	}
	st, err := llama.Generate(cx, ctx, tokens, llama.GenerateOptions{
		SampleOptions: llama.SampleOptions{Temperature: float32(*temperature), TopP: float32(*topP), Seed: uint32(*seed), Choices: choices},
		MaxTokens:     *maxTokens,
	}, func(s string) { fmt.Print(s) })
	fmt.Println()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "prompt %d tokens (%.0f tokens/s), generated %d tokens in %.2fs: %.1f tokens/s (stopped: %s)\n",
		st.PromptTokens, st.PromptTokensPerSecond(), st.GeneratedTokens, st.GenerateTime.Seconds(), st.TokensPerSecond(), st.Stop)
	return nil
}
