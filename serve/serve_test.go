package serve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

const smolLM2 = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

// writeRandomAdapter writes a rank-4 LoRA adapter over the attention
// query and value weights of every layer of base, with random A and B
// large enough to change greedy answers.
func writeRandomAdapter(t testing.TB, base, path string, seed uint64) {
	t.Helper()
	f, err := llama.OpenGGUF(base)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	random := func(n uint64, scale float64) []byte {
		b := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64()*scale)))
		}
		return b
	}
	const rank = 4
	var tensors []gguf.Tensor
	for _, ti := range f.Tensors {
		if !strings.HasSuffix(ti.Name, ".attn_q.weight") && !strings.HasSuffix(ti.Name, ".attn_v.weight") {
			continue
		}
		nIn, nOut := ti.Dims[0], ti.Dims[1]
		tensors = append(tensors,
			gguf.Tensor{Name: ti.Name + ".lora_a", Dims: []uint64{nIn, rank}, Type: gguf.F32, Data: random(nIn*rank, 1/math.Sqrt(float64(nIn)))},
			gguf.Tensor{Name: ti.Name + ".lora_b", Dims: []uint64{rank, nOut}, Type: gguf.F32, Data: random(rank*nOut, 0.05)})
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: f.Architecture()},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: float32(rank)},
	}
	if err := gguf.Write(path, kv, tensors); err != nil {
		t.Fatal(err)
	}
}

// fixture is a started server over SmolLM2 with adapters a1, a2 (and a3).
type fixture struct {
	base     string
	adapters map[string]string // name → file
	engine   *Engine
	srv      *httptest.Server
	client   *openai.Client
}

func newFixture(t *testing.T, n int, o Options, key string) *fixture {
	t.Helper()
	base := shared.Path(t, smolLM2)
	dir := t.TempDir()
	fx := &fixture{base: base, adapters: map[string]string{}}
	var refs []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("a%d.gguf", i))
		writeRandomAdapter(t, base, p, uint64(i))
		fx.adapters[fmt.Sprintf("a%d", i)] = p
		refs = append(refs, p)
	}
	entries, err := Resolve(context.Background(), refs, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o.Base, o.BaseName, o.Adapters = base, "base", entries
	if o.Threads == 0 {
		// One thread: ggml's workers spin-wait for each other, and on a
		// busy machine two of them are far slower than one.
		o.Threads = 1
	}
	if fx.engine, err = New(o); err != nil {
		t.Fatal(err)
	}
	fx.srv = httptest.NewServer(Handler(fx.engine, HandlerOptions{APIKey: key}))
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = fx.srv.URL + "/v1"
	fx.client = openai.NewClientWithConfig(cfg)
	t.Cleanup(func() {
		fx.srv.Close()
		fx.engine.Close()
	})
	return fx
}

// reference holds what in-process generation answers, per model and
// prompt, loaded once per test.
type reference struct {
	m        *llama.Model
	render   *datasets.Renderer
	adapters map[string]*llama.Adapter
	mu       sync.Mutex
	memo     map[string]string
}

func newReference(t *testing.T, fx *fixture) *reference {
	t.Helper()
	m, err := llama.LoadModel(fx.base, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &reference{m: m, adapters: map[string]*llama.Adapter{}, memo: map[string]string{}}
	t.Cleanup(func() {
		for _, a := range r.adapters {
			a.Close()
		}
		m.Close()
	})
	if r.render, err = datasets.NewRenderer(m, datasets.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, p := range fx.adapters {
		if r.adapters[name], err = llama.LoadAdapter(m, p); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// answer is model's greedy answer to a one-turn chat, generated
// in-process as eval's local contestant and `finetune generate` do: the
// prompt rendered by datasets, one sequence, llama.Generate.
func (r *reference) answer(t testing.TB, model, prompt string, maxTokens int) string {
	t.Helper()
	key := fmt.Sprint(model, "\x00", prompt, "\x00", maxTokens)
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.memo[key]; ok {
		return s
	}
	c, err := r.render.Case(datasets.Record{Messages: []datasets.Message{{Role: "user", Content: prompt}, {Role: "assistant"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := llama.NewContext(r.m, llama.ContextOptions{Context: len(c.PromptTokens) + maxTokens + 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if a := r.adapters[model]; a != nil {
		if err := ctx.SetAdapter(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	var sb strings.Builder
	if _, err := llama.Generate(context.Background(), ctx, c.PromptTokens, llama.GenerateOptions{MaxTokens: maxTokens}, func(s string) { sb.WriteString(s) }); err != nil {
		t.Fatal(err)
	}
	r.memo[key] = sb.String()
	return sb.String()
}

var prompts = []string{
	"What is the capital of France?",
	"Write one sentence about the sea.",
}

func chatReq(model, prompt string, maxTokens int) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: model, MaxTokens: maxTokens, Messages: []openai.ChatCompletionMessage{{Role: "user", Content: prompt}}}
}

// streamText reads a streamed chat completion to its end.
func streamText(ctx context.Context, c *openai.Client, req openai.ChatCompletionRequest) (string, string, error) {
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return "", "", err
	}
	defer st.Close()
	var sb strings.Builder
	finish := ""
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return sb.String(), finish, nil
		}
		if err != nil {
			return sb.String(), finish, err
		}
		for _, ch := range resp.Choices {
			sb.WriteString(ch.Delta.Content)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
}

// TestServeMatchesInProcess: the base and two adapters, asked through the
// go-openai client, answer exactly as in-process greedy generation, with
// and without streaming; /v1/models lists them; completions continue raw
// text as `finetune generate` does.
func TestServeMatchesInProcess(t *testing.T) {
	fx := newFixture(t, 2, Options{Sequences: 4, Context: 512}, "")
	ref := newReference(t, fx)
	ctx := context.Background()

	models, err := fx.client.ListModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models.Models {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "base,a1,a2" {
		t.Fatalf("/v1/models lists %v, want base, a1, a2", ids)
	}

	const maxTokens = 20
	answers := map[string]string{}
	for _, model := range []string{"base", "a1", "a2"} {
		for _, p := range prompts {
			want := ref.answer(t, model, p, maxTokens)
			resp, err := fx.client.CreateChatCompletion(ctx, chatReq(model, p, maxTokens))
			if err != nil {
				t.Fatalf("%s: %v", model, err)
			}
			got := resp.Choices[0].Message.Content
			if got != want {
				t.Errorf("%s, %q: served %q, in-process %q", model, p, got, want)
			}
			if resp.Model != model || resp.Usage.CompletionTokens == 0 || resp.Usage.PromptTokens == 0 {
				t.Errorf("%s: response model %q, usage %+v", model, resp.Model, resp.Usage)
			}
			streamed, finish, err := streamText(ctx, fx.client, chatReq(model, p, maxTokens))
			if err != nil {
				t.Fatalf("%s stream: %v", model, err)
			}
			if streamed != want || finish != string(resp.Choices[0].FinishReason) {
				t.Errorf("%s, %q: streamed %q (%s), in-process %q (%s)", model, p, streamed, finish, want, resp.Choices[0].FinishReason)
			}
			answers[model] += got + "|"
		}
	}
	if answers["base"] == answers["a1"] || answers["a1"] == answers["a2"] {
		t.Fatalf("the adapters do not change the answers: the test cannot tell models apart:\n%v", answers)
	}

	// Completions: raw text, tokenized as generate tokenizes it.
	resp, err := fx.client.CreateCompletion(ctx, openai.CompletionRequest{Model: "a1", Prompt: "The sea is", MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := ref.m.Tokenize("The sea is", true, false)
	if err != nil {
		t.Fatal(err)
	}
	lctx, err := llama.NewContext(ref.m, llama.ContextOptions{Context: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lctx.Close()
	if err := lctx.SetAdapter(ref.adapters["a1"], 1); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if _, err := llama.Generate(ctx, lctx, toks, llama.GenerateOptions{MaxTokens: 12}, func(s string) { sb.WriteString(s) }); err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != sb.String() || resp.Choices[0].FinishReason != "length" {
		t.Fatalf("completion %q (%s), in-process %q", resp.Choices[0].Text, resp.Choices[0].FinishReason, sb.String())
	}
	t.Logf("answers: %v", answers)
}

// TestEvalContestantAgainstServe: eval's openai contestant pointed at a
// serve URL answers as eval's local contestant with the same adapter, with
// the key from the environment.
func TestEvalContestantAgainstServe(t *testing.T) {
	const key = "sk-eval-serve"
	t.Setenv("FINETUNE_TEST_SERVE_KEY", key)
	fx := newFixture(t, 1, Options{Sequences: 2, Context: 256}, key)
	ctx := context.Background()
	settings := evals.Settings{MaxTokens: 16, Seed: 7}
	api, err := evals.NewOpenAI("served", evals.OpenAIOptions{BaseURL: fx.srv.URL + "/v1", Model: "a1", APIKeyEnv: "FINETUNE_TEST_SERVE_KEY", Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	local, err := evals.NewLocal("local", evals.LocalOptions{Model: fx.base, Adapters: []evals.AdapterSpec{{Path: fx.adapters["a1"]}}, Settings: settings, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	m, err := llama.LoadModel(fx.base, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := datasets.NewRenderer(m, datasets.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prompts {
		c, err := r.Case(datasets.Record{Messages: []datasets.Message{{Role: "user", Content: p}, {Role: "assistant", Content: "-"}}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := api.Answer(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		want, err := local.Answer(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text != want.Text || got.FinishReason != want.FinishReason || got.Usage != want.Usage {
			t.Errorf("%q: served %q (%s, %+v), local %q (%s, %+v)", p, got.Text, got.FinishReason, got.Usage, want.Text, want.FinishReason, want.Usage)
		}
	}
}
