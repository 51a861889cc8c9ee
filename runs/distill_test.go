package runs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
)

// countingProxy forwards to target and counts the chat completion
// requests it passes on.
type countingProxy struct {
	srv   *httptest.Server
	chats atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	p := &countingProxy{}
	u, _ := http.NewRequest("GET", target, nil)
	rp := httputil.NewSingleHostReverseProxy(u.URL)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			p.chats.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// writePrompts writes the first n conversations of the customer-support
// training data (their answers are not the teacher's: Distill drops them).
func writePrompts(t *testing.T, dir string, n int) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "recipes", "data", "customer-support", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")[:n]
	p := filepath.Join(dir, "prompts.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// greedy asks the server's /v1 directly, with a plain request of our own,
// for its greedy answer to msgs.
func greedy(t *testing.T, base, model string, msgs []datasets.Message, maxTokens int) (string, string) {
	t.Helper()
	type m struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var ms []m
	for _, x := range msgs {
		ms = append(ms, m{x.Role, x.Content})
	}
	body, _ := json.Marshal(map[string]any{"model": model, "messages": ms, "temperature": 0, "max_tokens": maxTokens})
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Choices) == 0 {
		t.Fatalf("direct request: %v (%d choices)", err, len(out.Choices))
	}
	return out.Choices[0].Message.Content, out.Choices[0].FinishReason
}

func readDistilled(t *testing.T, path string) []DistilledRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []DistilledRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r DistilledRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

const distillMaxTokens = 40

func distillRecipe(t *testing.T, dir, prompts, baseURL string, extra string) string {
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	return fmt.Sprintf(`name: distilled
base: %s
distill:
  prompts: %s
  teacher: teacher
  filters:
    keep_cut: true
%s
eval:
  contestants:
    - name: base
      kind: local
    - name: teacher
      kind: openai
      model: teacher
      base_url: %s/v1
      concurrency: 1
      timeout: 2m
  metrics:
    - name: rouge_l
  generation:
    max_tokens: %d
    temperature: 0
`, model, prompts, extra, baseURL, distillMaxTokens)
}

// TestDistillFromOllama distills from a real teacher: the pinned Ollama
// serving SmolLM2-135M-Instruct (its own chat template) through its
// OpenAI-compatible /v1, asked by the openai contestant. The distilled
// file's answers are the teacher's greedy answers (asked again directly,
// with a request of our own); a second distillation asks the teacher
// nothing (the cache); one interrupted after 3 answers leaves no run
// folder, and the next asks only the prompts still missing. Training
// reads the distilled file as it is.
func TestDistillFromOllama(t *testing.T) {
	srv := ollamatest.Start(t, ollamatest.Options{})
	model := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	srv.CreateChat(t, "teacher", model, map[string]any{"num_thread": 1})
	proxy := newCountingProxy(t, srv.URL.String())
	dir := t.TempDir()
	const n = 6
	prompts := writePrompts(t, dir, n)
	r := recipe(t, dir, distillRecipe(t, dir, prompts, proxy.srv.URL, ""))
	root := filepath.Join(dir, "runs")
	ctx := context.Background()

	run, rep, err := Distill(ctx, r, DistillOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	if got := proxy.chats.Load(); got != n {
		t.Fatalf("first distillation sent %d requests for %d prompts", got, n)
	}
	if rep.Status != "ok" || rep.Rows != n || rep.Answered != n || rep.Cached != 0 || rep.Teacher.Model != "teacher" {
		t.Fatalf("report: %+v", rep)
	}
	rows := readDistilled(t, run.Path(DistilledFile))
	if len(rows) != n {
		t.Fatalf("%d rows, want %d", len(rows), n)
	}
	want, _, _ := DistillPrompts(r)
	for i, row := range rows {
		last := row.Messages[len(row.Messages)-1]
		if last.Role != "assistant" || len(row.Messages) != len(want[i].Prompt)+1 {
			t.Fatalf("row %d: %+v", i, row.Messages)
		}
		direct, finish := greedy(t, srv.URL.String(), "teacher", want[i].Prompt, distillMaxTokens)
		if last.Content != strings.TrimSpace(direct) || row.Distill.FinishReason != finish {
			t.Errorf("row %d: distilled %q (%s), the teacher's greedy answer %q (%s)", i, last.Content, row.Distill.FinishReason, direct, finish)
		}
		p := row.Distill
		if p.Teacher != "teacher" || p.Kind != "openai" || p.Model != "teacher" || p.Usage.CompletionTokens == 0 || p.Source != fmt.Sprintf("%s:%d", prompts, i+1) || p.Time.IsZero() || p.Settings.MaxTokens != distillMaxTokens {
			t.Errorf("row %d: provenance %+v", i, p)
		}
	}
	t.Logf("row 0 answer: %q", rows[0].Messages[len(rows[0].Messages)-1].Content)

	// Training reads the distilled file unchanged.
	rd, err := datasets.Open(run.Path(DistilledFile), datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		rec, err := rd.Next()
		if err != nil {
			if i != n {
				t.Fatalf("training read %d records of %d: %v", i, n, err)
			}
			break
		}
		if rec.Format != datasets.FormatMessages || rec.Messages[len(rec.Messages)-1].Content != rows[i].Messages[len(rows[i].Messages)-1].Content {
			t.Fatalf("record %d read as %+v", i, rec)
		}
	}
	rd.Close()

	// Again: every answer from the cache, nothing asked.
	before := proxy.chats.Load()
	run2, rep2, err := Distill(ctx, r, DistillOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	run2.Close()
	if got := proxy.chats.Load() - before; got != 0 || rep2.Cached != n || rep2.SpentUSD != 0 {
		t.Fatalf("second distillation asked %d times, %d cached", got, rep2.Cached)
	}
	a, _ := os.ReadFile(run.Path(DistilledFile))
	b, _ := os.ReadFile(run2.Path(DistilledFile))
	if strip := func(b []byte) string {
		var out []string
		for _, row := range readDistilledBytes(t, b) {
			out = append(out, row.Messages[len(row.Messages)-1].Content)
		}
		return strings.Join(out, "\x00")
	}; strip(a) != strip(b) {
		t.Fatal("the second distillation's answers differ from the first's")
	}

	// Interrupted after 3 answers: no run folder; the next run asks the
	// other 3 only.
	cache := filepath.Join(dir, "fresh-cache")
	out := filepath.Join(dir, "interrupted")
	ictx, cancel := context.WithCancel(ctx)
	before = proxy.chats.Load()
	_, _, err = Distill(ictx, r, DistillOptions{Root: root, Out: out, CacheDir: cache, Progress: func(p evals.Progress) {
		if p.Wait == nil && p.Done == 3 {
			cancel()
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted distillation: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted distillation left %s", out)
	}
	if got := proxy.chats.Load() - before; got != 3 {
		t.Fatalf("the interrupted distillation asked %d times, want 3", got)
	}
	before = proxy.chats.Load()
	run3, rep3, err := Distill(ctx, r, DistillOptions{Root: root, Out: out, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	run3.Close()
	if got := proxy.chats.Load() - before; got != n-3 || rep3.Cached != 3 || rep3.Rows != n {
		t.Fatalf("the resumed distillation asked %d times (want %d), %d cached, %d rows", got, n-3, rep3.Cached, rep3.Rows)
	}
	c, _ := os.ReadFile(run3.Path(DistilledFile))
	if len(readDistilledBytes(t, c)) != n {
		t.Fatal("the resumed distillation's file is short")
	}
}

func readDistilledBytes(t *testing.T, b []byte) []DistilledRow {
	p := filepath.Join(t.TempDir(), "d.jsonl")
	os.WriteFile(p, b, 0o644)
	return readDistilled(t, p)
}
