package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	goodKey = "sk-test-secret-1234567890"
	badKey  = "sk-wrong-key-0987654321"
)

// flakyAPI is an OpenAI-compatible chat completions server that fails the
// first attempts of some cases the ways real APIs do.
type flakyAPI struct {
	t         *testing.T
	requests  atomic.Int64
	mu        sync.Mutex
	attempts  map[string][]time.Time // by case, when each attempt arrived
	delivered map[string]int         // complete successful responses
	bodies    []map[string]any
}

// faults: what the first attempts of a case get.
var faults = map[string][]string{
	"case 0": {"429"},
	"case 1": {"500"},
	"case 2": {"slow"},
	"case 3": {"malformed"},
	"case 4": {"disconnect"},
	"case 5": {"503-ms", "503-ms"},
}

func newFlakyAPI(t *testing.T) (*flakyAPI, *httptest.Server) {
	f := &flakyAPI{t: t, attempts: map[string][]time.Time{}, delivered: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *flakyAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+goodKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}`)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	msgs := body["messages"].([]any)
	id := msgs[len(msgs)-1].(map[string]any)["content"].(string)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.attempts[id] = append(f.attempts[id], time.Now())
	n := len(f.attempts[id])
	f.mu.Unlock()
	fault := ""
	if n <= len(faults[id]) {
		fault = faults[id][n-1]
	}
	switch fault {
	case "429":
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}`)
		return
	case "500":
		http.Error(w, "upstream exploded", http.StatusInternalServerError)
		return
	case "503-ms":
		w.Header().Set("Retry-After-Ms", "30")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	case "slow":
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
			return // the client gave up: nothing delivered
		}
	case "malformed":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id": "chatcmpl-1", "choices": [{"message": {"content": "half`)
		return
	case "disconnect":
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			f.t.Error(err)
			return
		}
		fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":")
		buf.Flush()
		conn.Close()
		return
	}
	resp := fmt.Sprintf(`{"id":"chatcmpl-%d","object":"chat.completion","created":1700000000,"model":"%s","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}`,
		n, body["model"], "answer to "+id)
	w.Header().Set("Content-Type", "application/json")
	if _, err := fmt.Fprint(w, resp); err == nil {
		f.mu.Lock()
		f.delivered[id]++
		f.mu.Unlock()
	}
}

// captureLogs is a logger that writes to a buffer at debug level.
func captureLogs() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOpenAIRetriesAndCache runs an OpenAI-compatible contestant against a
// server that answers 429 with Retry-After, 500, 503, too slowly,
// malformed JSON and a connection dropped mid-response: the run completes
// with every case answered, the server delivered each answer exactly once,
// and a second run answers everything from the cache without a request. A
// contestant whose key the server rejects fails alone, and no key appears
// in logs, results, reports or the cache.
func TestOpenAIRetriesAndCache(t *testing.T) {
	api, srv := newFlakyAPI(t)
	logger, logs := captureLogs()
	t.Setenv("FT_TEST_OPENAI_KEY", goodKey)
	t.Setenv("FT_TEST_BAD_KEY", badKey)
	const n = 12
	var cases []Case
	for i := 0; i < n; i++ {
		c := qaCase(fmt.Sprintf("case %d", i), fmt.Sprintf("answer to case %d", i%2*i), "")
		c.Prompt = append([]Message{{Role: "system", Content: "Answer briefly."}}, c.Prompt...)
		cases = append(cases, c)
	}
	settings := Settings{MaxTokens: 64, Seed: 7, Stop: []string{"\n\n"}}
	retry := Retry{Attempts: 5, Base: 20 * time.Millisecond, Max: 200 * time.Millisecond, Timeout: 600 * time.Millisecond}
	price := Price{InputPerMillion: 2.5, OutputPerMillion: 10}
	newGood := func() Contestant {
		c, err := NewOpenAI("gpt", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "gpt-test", APIKeyEnv: "FT_TEST_OPENAI_KEY",
			Settings: settings, Concurrency: 4, Price: price, Retry: retry})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bad, err := NewOpenAI("rejected", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "gpt-test", APIKeyEnv: "FT_TEST_BAD_KEY", Concurrency: 2, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	suite := Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}
	cacheDir, out := t.TempDir(), t.TempDir()
	var progress []Progress
	start := time.Now()
	res, err := Run(context.Background(), suite, []Contestant{newGood(), bad}, RunOptions{CacheDir: cacheDir, Logger: logger,
		Progress: func(p Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first run: %v, %d requests", time.Since(start).Round(time.Millisecond), api.requests.Load())

	g := res.Contestant("gpt")
	if g.Status != "ok" || g.Answered != n || g.Failed != 0 || g.Cached != 0 {
		t.Fatalf("gpt: status %s (%s), answered %d, failed %d, cached %d", g.Status, g.Error, g.Answered, g.Failed, g.Cached)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("case %d", i)
		if d := api.delivered[id]; d != 1 {
			t.Errorf("%s was delivered %d times, want exactly once", id, d)
		}
		a := res.Cases[i].Answers[0]
		if a.Text != "answer to "+id {
			t.Errorf("%s: answer %q", id, a.Text)
		}
		if want := len(faults[id]); a.Retries != want || len(api.attempts[id]) != want+1 {
			t.Errorf("%s: %d retries, %d attempts; want %d and %d", id, a.Retries, len(api.attempts[id]), want, want+1)
		}
	}
	if at := api.attempts["case 0"]; len(at) == 2 && at[1].Sub(at[0]) < 950*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1", at[1].Sub(at[0]))
	}
	if s := g.Scores["em"]; s.N != n || !near(s.Value, 7.0/12) { // odd cases and case 0 have answers that match their reference
		t.Errorf("em %+v, want 7/12", s)
	}
	if g.Usage != (Usage{PromptTokens: 12 * n, CompletionTokens: 5 * n}) || !near(g.Cost, (12*n*2.5+5*n*10)/1e6) || !near(g.Spent, g.Cost) {
		t.Errorf("usage %+v cost %v spent %v", g.Usage, g.Cost, g.Spent)
	}
	if g.LatencyP50MS <= 0 || g.LatencyP95MS < g.LatencyP50MS {
		t.Errorf("latency p50 %v p95 %v", g.LatencyP50MS, g.LatencyP95MS)
	}
	// What was sent.
	b := api.bodies[0]
	if temp, ok := b["temperature"].(float64); !ok || temp != 0 {
		t.Errorf("temperature sent %v, want 0 (greedy), written out", b["temperature"])
	}
	if b["max_tokens"] != float64(64) || b["seed"] != float64(7) || fmt.Sprint(b["stop"]) != "[\n\n]" || b["model"] != "gpt-test" {
		t.Errorf("request %v", b)
	}
	if roles := fmt.Sprint(b["messages"]); !strings.Contains(roles, "role:system") || !strings.Contains(roles, "role:user") {
		t.Errorf("messages %s", roles)
	}
	// The rejected contestant failed alone, after no more requests than it
	// had in flight.
	r := res.Contestant("rejected")
	if r.Status != "failed" || !strings.Contains(r.Error, "401") || r.Answered != 0 || r.Failed != n {
		t.Errorf("rejected: status %s, error %q, answered %d, failed %d", r.Status, r.Error, r.Answered, r.Failed)
	}
	if bad := api.requests.Load() - int64(len(api.bodies)); bad > 2 {
		t.Errorf("the rejected contestant sent %d requests after a 401", bad)
	}
	if c := res.Compare("rejected", "gpt", "em"); c == nil || c.N != 0 {
		t.Errorf("comparison with a contestant that answered nothing: %+v", c)
	}
	if last := progress[len(progress)-1]; len(progress) != 2*n || last.Done != n {
		t.Errorf("%d progress reports, the last %+v", len(progress), last)
	}
	if err := WriteReports(out, res, ReportExtras{}); err != nil {
		t.Fatal(err)
	}

	// Again: everything from the cache, no request.
	before := api.requests.Load()
	res2, err := Run(context.Background(), suite, []Contestant{newGood()}, RunOptions{CacheDir: cacheDir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if got := api.requests.Load() - before; got != 0 {
		t.Errorf("the second run sent %d requests, want 0", got)
	}
	g2 := res2.Contestant("gpt")
	if g2.Cached != n || g2.Answered != n || g2.Spent != 0 || !near(g2.Cost, g.Cost) {
		t.Errorf("second run: cached %d, answered %d, spent %v, cost %v", g2.Cached, g2.Answered, g2.Spent, g2.Cost)
	}
	for i := range res2.Cases {
		if a, b := res2.Cases[i].Answers[0], res.Cases[i].Answers[0]; a.Text != b.Text || !a.Cached || a.LatencyMS != b.LatencyMS {
			t.Errorf("case %d from the cache: %+v, first run %+v", i, a, b)
		}
	}

	// No key anywhere.
	files := []string{filepath.Join(out, "results.json"), filepath.Join(out, "report.md"), filepath.Join(out, "report.html")}
	filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 3+n {
		t.Errorf("%d files in the cache, want %d", len(files)-3, n)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(goodKey)) || bytes.Contains(data, []byte(badKey)) {
			t.Errorf("%s holds an API key", p)
		}
	}
	if l := logs.String(); strings.Contains(l, goodKey) || strings.Contains(l, badKey) || !strings.Contains(l, "retrying") {
		t.Errorf("logs hold a key, or no retry was logged:\n%s", l)
	}
}

// TestOpenAIKeyFromEnvironment: the key comes from the named variable; an
// unset one is an error that names it.
func TestOpenAIKeyFromEnvironment(t *testing.T) {
	t.Setenv("FT_TEST_UNSET_KEY", "")
	_, err := NewOpenAI("gpt", OpenAIOptions{Model: "m", APIKeyEnv: "FT_TEST_UNSET_KEY"})
	if err == nil || !strings.Contains(err.Error(), "FT_TEST_UNSET_KEY") {
		t.Fatalf("unset key variable: %v", err)
	}
	if _, err := NewOpenAI("gpt", OpenAIOptions{Model: "m", BaseURL: "https://user:sk-x@example.com/v1"}); err == nil {
		t.Fatal("a key in the base URL was accepted")
	}
	if _, err := NewOpenAI("gpt 4", OpenAIOptions{Model: "m"}); err == nil {
		t.Fatal("a name with a space was accepted")
	}
}

// TestGiveUpAfterConsecutiveFailures: a server that keeps failing makes the
// contestant fail after MaxConsecutiveFailures cases, without asking the
// rest; a contestant that answers goes on.
func TestGiveUpAfterConsecutiveFailures(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down for maintenance", http.StatusBadGateway)
	}))
	defer srv.Close()
	down, err := NewOpenAI("down", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "m", Concurrency: 1,
		Retry: Retry{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var cases []Case
	for i := 0; i < 20; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	fine := newScripted("fine", func(Case) (string, error) { return "yes", nil })
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}},
		[]Contestant{fine, down}, RunOptions{MaxConsecutiveFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Contestant("down")
	if d.Status != "failed" || !strings.Contains(d.Error, "3 failures in a row") || !strings.Contains(d.Error, "502") {
		t.Errorf("down: %s %q", d.Status, d.Error)
	}
	if h := hits.Load(); h != 6 {
		t.Errorf("%d requests, want 6 (3 cases × 2 attempts)", h)
	}
	if !strings.Contains(res.Cases[10].Answers[1].Error, "not asked") {
		t.Errorf("case 10 of the failed contestant: %q", res.Cases[10].Answers[1].Error)
	}
	if f := res.Contestant("fine"); f.Status != "ok" || f.Scores["em"].Value != 1 {
		t.Errorf("fine: %+v", f)
	}
}

// TestInterruptedRunResumes: a run cancelled midway returns the context's
// error, and the next run asks only what the first did not get.
func TestInterruptedRunResumes(t *testing.T) {
	var cases []Case
	for i := 0; i < 10; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	ctx, cancel := context.WithCancel(context.Background())
	slow := newScripted("slow", func(c Case) (string, error) {
		if lastUser(c) == "q4" {
			cancel()
		}
		return "yes", nil
	})
	slow.concurrency = 1
	dir := t.TempDir()
	suite := Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}
	if _, err := Run(ctx, suite, []Contestant{slow}, RunOptions{CacheDir: dir}); err != context.Canceled {
		t.Fatalf("interrupted run: err %v", err)
	}
	first := slow.calls.Load()
	res, err := Run(context.Background(), suite, []Contestant{slow}, RunOptions{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if total := slow.calls.Load(); total != 10 || first != 5 {
		t.Errorf("asked %d times before the interruption and %d in all, want 5 and 10", first, total)
	}
	for q, k := range slow.asked {
		if k != 1 {
			t.Errorf("%s asked %d times", q, k)
		}
	}
	if c := res.Contestant("slow"); c.Cached != 5 || c.Answered != 10 {
		t.Errorf("resumed run: cached %d answered %d", c.Cached, c.Answered)
	}
}
