package serve

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	openai "github.com/sashabaranov/go-openai"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

// benchPrompts are the questions both servers answer.
var benchPrompts = []string{
	"My order arrived broken. What should I do?",
	"How do I reset my password?",
	"Can I change the delivery address of an order I placed yesterday?",
	"What is your return policy for opened items?",
	"I was charged twice for the same order.",
	"Do you ship to Canada?",
	"The lamp I bought flickers. Is that normal?",
	"How long does a refund take?",
}

// benchSystem is sent with every question, so that both servers render
// the same conversation (Ollama's template below has no default system
// prompt of its own).
const benchSystem = "You are a helpful assistant."

// chatMLTemplate renders conversations for Ollama as SmolLM2's template
// does.
const chatMLTemplate = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"

// TestBenchServe measures serve beside Ollama serving the merged models,
// on SmolLM2-135M-Instruct with three adapters trained briefly: tokens/s
// of one stream and of 8 concurrent streams (on one adapter, and across
// the three), alternated round by round, and the memory of one base with
// 3 adapters against 3 merged models. `make bench-serve` runs it.
func TestBenchServe(t *testing.T) {
	if os.Getenv("FINETUNE_BENCH_SERVE") == "" {
		t.Skip("SKIPPED: a benchmark of minutes; run it with `make bench-serve` (FINETUNE_BENCH_SERVE=1)")
	}
	base := shared.Path(t, smolLM2)
	maxTokens, rounds, steps := envInt("FINETUNE_BENCH_TOKENS", 64), envInt("FINETUNE_BENCH_ROUNDS", 2), envInt("FINETUNE_BENCH_STEPS", 8)
	// Decoding threads of both servers: 1 by default, as on a shared
	// machine ggml's spinning workers (and Ollama's runner, which does not
	// adapt its thread count to the load) lose far more than a second
	// core gives.
	threads := envInt("FINETUNE_BENCH_THREADS", 1)
	dir := os.Getenv("FINETUNE_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "finetune-bench-serve")
	}
	root := shared.ModuleRoot()
	// Three adapters trained briefly (kept in dir for the next run).
	type trained struct{ name, recipe string }
	var refs []string
	for _, tr := range []trained{{"support", "customer-support.yaml"}, {"legal", "legal.yaml"}, {"support-fast", "customer-support.yaml"}} {
		out := filepath.Join(dir, tr.name)
		if _, err := os.Stat(filepath.Join(out, runs.AdapterFile)); err != nil {
			os.RemoveAll(out)
			sets := []string{"name=" + tr.name, fmt.Sprintf("train.max_steps=%d", steps), "train.warmup_steps=2", "train.val_windows=1", "train.threads=2"}
			if tr.name == "support-fast" {
				sets = append(sets, "train.learning_rate=8e-3")
			}
			r, err := recipes.Load(filepath.Join(root, "recipes", tr.recipe), sets)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			run, _, err := runs.Start(context.Background(), r, runs.TrainOptions{Out: out, Overrides: sets})
			if err != nil {
				t.Fatalf("training %s: %v", tr.name, err)
			}
			run.Close()
			t.Logf("trained %s: %d steps in %s", tr.name, steps, time.Since(start).Round(time.Second))
		}
		refs = append(refs, out)
	}
	entries, err := Resolve(context.Background(), refs, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var merged []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name+".merged.gguf")
		if _, err := os.Stat(p); err != nil {
			if _, err := adapters.Merge(base, e.Adapter, p, adapters.MergeOptions{Threads: 2}); err != nil {
				t.Fatal(err)
			}
		}
		merged = append(merged, p)
	}

	// Ollama 0.17.4 with the three merged models, greedy as serve is (a
	// request without a temperature gets the model's parameters, and
	// go-openai leaves a temperature of 0 out).
	ol := ollamatest.Start(t, ollamatest.Options{Env: []string{"OLLAMA_NUM_PARALLEL=8", "OLLAMA_MAX_LOADED_MODELS=3", "OLLAMA_KEEP_ALIVE=-1"}})
	for i, e := range entries {
		createChatModel(t, ol, e.Name, merged[i], map[string]any{"num_thread": threads, "num_ctx": 512, "temperature": 0, "repeat_penalty": 1, "stop": []string{"<|im_end|>"}})
	}

	before := rssMB(t)
	eng, err := New(Options{Base: base, BaseName: "base", Adapters: entries, Sequences: 8, Context: 512, MaxAdapters: 3, Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(eng, HandlerOptions{}))
	defer func() { srv.Close(); eng.Close() }()
	client := func(url string) *openai.Client {
		cfg := openai.DefaultConfig("")
		cfg.BaseURL = url + "/v1"
		return openai.NewClientWithConfig(cfg)
	}
	servers := []struct {
		name string
		c    *openai.Client
	}{{"finetune serve", client(srv.URL)}, {"Ollama 0.17.4 (merged)", client(ol.URL.String())}}
	names := []string{entries[0].Name, entries[1].Name, entries[2].Name}

	// Warm-up: every model on both servers answers once; the answers are
	// compared.
	same := 0
	for _, n := range names {
		var answers [2]string
		for k, s := range servers {
			resp, err := s.c.CreateChatCompletion(context.Background(), benchReq(n, benchPrompts[0], maxTokens))
			if err != nil {
				t.Fatalf("%s, %s: %v", s.name, n, err)
			}
			answers[k] = resp.Choices[0].Message.Content
		}
		if answers[0] == answers[1] {
			same++
		} else {
			t.Logf("%s answers differ:\n  serve:  %q\n  ollama: %q", n, answers[0], answers[1])
		}
	}
	serveRSS := rssMB(t) - before
	olRSS := ollamaRunnersRSS(t, ol)

	type load struct {
		name    string
		streams int
		models  []string
	}
	loads := []load{{"1 stream, one adapter", 1, names[:1]}, {"8 streams, one adapter", 8, names[:1]}, {"8 streams, 3 adapters", 8, names}}
	tokens := map[string]int{}
	took := map[string]time.Duration{}
	for r := range rounds {
		for _, l := range loads {
			for k, s := range servers {
				key := l.name + "\x00" + s.name
				n, d, err := runLoad(s.c, l.streams, l.models, maxTokens)
				if err != nil {
					t.Fatalf("round %d, %s, %s: %v", r, l.name, s.name, err)
				}
				tokens[key] += n
				took[key] += d
				_ = k
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "SmolLM2-135M-Instruct Q4_1, adapters %s (%d steps each), %d threads each, %d rounds alternated, %d tokens per answer at most:\n", strings.Join(names, ", "), steps, threads, rounds, maxTokens)
	fmt.Fprintf(&sb, "%-24s %16s %26s %8s\n", "load", "serve tokens/s", "Ollama 0.17.4 tokens/s", "ratio")
	for _, l := range loads {
		a := float64(tokens[l.name+"\x00"+servers[0].name]) / took[l.name+"\x00"+servers[0].name].Seconds()
		b := float64(tokens[l.name+"\x00"+servers[1].name]) / took[l.name+"\x00"+servers[1].name].Seconds()
		fmt.Fprintf(&sb, "%-24s %16.1f %26.1f %7.2fx\n", l.name, a, b, a/b)
	}
	var adapterBytes, mergedBytes int64
	for i, e := range entries {
		adapterBytes += fileSize(t, e.Adapter)
		mergedBytes += fileSize(t, merged[i])
	}
	baseBytes := fileSize(t, base)
	fmt.Fprintf(&sb, "files: base %.1f MB + 3 adapters %.1f MB = %.1f MB; 3 merged models %.1f MB\n",
		mb(baseBytes), mb(adapterBytes), mb(baseBytes+adapterBytes), mb(mergedBytes))
	fmt.Fprintf(&sb, "resident memory: serve (base + 3 adapters, 8 sequences of 512) %.0f MB; Ollama's runners (3 merged, 8 parallel of 512) %.0f MB\n", serveRSS, olRSS)
	fmt.Fprintf(&sb, "greedy answers identical on both servers: %d of %d models\n", same, len(names))
	t.Log("\n" + sb.String())
	fmt.Print(sb.String())
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func fileSize(t testing.TB, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func benchReq(model, prompt string, maxTokens int) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: model, MaxTokens: maxTokens, Messages: []openai.ChatCompletionMessage{
		{Role: "system", Content: benchSystem}, {Role: "user", Content: prompt}}}
}

// runLoad asks every prompt once, streams at a time, spread over models,
// and returns the completion tokens received and the wall time.
func runLoad(c *openai.Client, streams int, models []string, maxTokens int) (int, time.Duration, error) {
	start := time.Now()
	var mu sync.Mutex
	total := 0
	var firstErr error
	sem := make(chan struct{}, streams)
	var wg sync.WaitGroup
	for i, p := range benchPrompts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req := benchReq(models[i%len(models)], p, maxTokens)
			req.Stream, req.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
			st, err := c.CreateChatCompletionStream(context.Background(), req)
			n := 0
			if err == nil {
				for {
					resp, rerr := st.Recv()
					if rerr != nil {
						if rerr.Error() != "EOF" {
							err = rerr
						}
						break
					}
					if resp.Usage != nil {
						n = resp.Usage.CompletionTokens
					}
				}
				st.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return total, time.Since(start), firstErr
}

// createChatModel makes an Ollama model of a GGUF file with a ChatML
// template.
func createChatModel(t testing.TB, s *ollamatest.Server, name, model string, params map[string]any) {
	t.Helper()
	sum, _, err := filehash.SHA256(model)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	if err := s.Client.CreateBlob(ctx, "sha256:"+sum, f); err != nil {
		t.Fatal(err)
	}
	stream := false
	req := &api.CreateRequest{Model: name, Files: map[string]string{filepath.Base(model): "sha256:" + sum}, Template: chatMLTemplate, Parameters: params, Stream: &stream}
	if err := s.Client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}

// ollamaRunnersRSS is the resident memory of the server's model runners.
func ollamaRunnersRSS(t testing.TB, s *ollamatest.Server) float64 {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	total := 0.0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if !strings.Contains(cmd, s.Bin) || !strings.Contains(cmd, "runner") || !strings.Contains(cmd, s.Models) {
			continue
		}
		st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
				total += kb / 1024
			}
		}
	}
	return total
}
