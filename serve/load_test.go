package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/datasets"
)

// post sends body to url and returns the status (0 when the request
// failed, reported), the Retry-After header and the body. Safe to call
// from any goroutine.
func post(t testing.TB, ctx context.Context, url, key, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Errorf("%v", err)
		return 0, "", nil
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", url, err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("POST %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

// chatBody is a one-turn chat request.
func chatBody(model, prompt string, maxTokens int, stream bool) string {
	b, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}, "max_tokens": maxTokens, "stream": stream})
	return string(b)
}

// answerOf is the text of a chat response: a JSON completion, or a stream
// of server-sent events ending in [DONE].
func answerOf(t testing.TB, body []byte, stream bool) string {
	t.Helper()
	if !stream {
		var r struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) != 1 {
			t.Errorf("not a chat completion (%v): %s", err, body)
			return ""
		}
		return r.Choices[0].Message.Content
	}
	var sb strings.Builder
	done := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Errorf("bad event %q: %v", line, err)
			return ""
		}
		for _, ch := range c.Choices {
			sb.WriteString(ch.Delta.Content)
		}
	}
	if !done {
		t.Errorf("the stream did not end with [DONE]: %s", body)
	}
	return sb.String()
}

// oneError checks that body is exactly one OpenAI error object and
// returns its message.
func oneError(t testing.TB, what string, body []byte) string {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("%s: not one JSON error object (%v): %s", what, err, body)
		return ""
	}
	if dec.More() {
		t.Errorf("%s: more than one JSON value: %s", what, body)
	}
	return e.Error.Message
}

// TestServeBadInput: each bad request gets its status and one JSON error
// that says what is wrong, and the server goes on answering.
func TestServeBadInput(t *testing.T) {
	const key = "sk-test-serve"
	fx := newFixture(t, 1, Options{Sequences: 2, Context: 256}, key)
	chat := fx.srv.URL + "/v1/chat/completions"
	huge := strings.Repeat("lorem ipsum ", 1<<20/12)
	cases := []struct {
		name, path, key, body string
		status                int
		says                  string // in the message
	}{
		{"malformed JSON", "/v1/chat/completions", key, `{"model": "a1", "messages": [`, 400, "parse the JSON"},
		{"not an object", "/v1/chat/completions", key, `[1, 2]`, 400, "parse the JSON"},
		{"unknown field", "/v1/chat/completions", key, `{"model": "a1", "messages": [{"role": "user", "content": "Hi"}], "temprature": 0}`, 400, "temprature"},
		{"negative max_tokens", "/v1/chat/completions", key, chatBody("a1", "Hi", -1, false), 400, "max_tokens"},
		{"no messages", "/v1/chat/completions", key, `{"model": "a1"}`, 400, "messages"},
		{"bad role", "/v1/chat/completions", key, `{"model": "a1", "messages": [{"role": "robot", "content": "Hi"}]}`, 400, "robot"},
		{"n above 1", "/v1/chat/completions", key, `{"model": "a1", "n": 2, "messages": [{"role": "user", "content": "Hi"}]}`, 400, "n = 1"},
		{"1 MB prompt", "/v1/chat/completions", key, chatBody("a1", huge, 8, false), 400, "maximum context length is 256 tokens (serve --ctx)"},
		{"prompt and answer over the context", "/v1/chat/completions", key, chatBody("a1", "Hi", 250, true), 400, "maximum context length is 256"},
		{"1 MB completion prompt", "/v1/completions", key, `{"model": "a1", "prompt": "` + huge + `"}`, 400, "maximum context length"},
		{"unknown model", "/v1/chat/completions", key, chatBody("nope", "Hi", 8, false), 404, `"nope" does not exist`},
		{"missing key", "/v1/chat/completions", "", chatBody("a1", "Hi", 8, false), 401, "API key"},
		{"wrong key", "/v1/chat/completions", "sk-wrong", chatBody("a1", "Hi", 8, false), 401, "Incorrect API key"},
		{"unknown path", "/v1/embeddings", key, `{}`, 404, "Unknown request URL"},
	}
	for _, c := range cases {
		status, _, body := post(t, context.Background(), fx.srv.URL+c.path, c.key, c.body)
		if status != c.status {
			t.Errorf("%s: status %d, want %d: %.300s", c.name, status, c.status, body)
			continue
		}
		if msg := oneError(t, c.name, body); !strings.Contains(msg, c.says) {
			t.Errorf("%s: message %q does not say %q", c.name, msg, c.says)
		}
		// Still serving.
		if status, _, body := post(t, context.Background(), chat, key, chatBody("a1", "Hi", 2, false)); status != 200 {
			t.Fatalf("after %s: status %d: %s", c.name, status, body)
		}
	}
	// The models list needs the key too.
	req, _ := http.NewRequest(http.MethodGet, fx.srv.URL+"/v1/models", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("GET /v1/models without the key: %d, want 401", resp.StatusCode)
	}
}

// TestServeAdaptersQueueDrain: adapters load on first use and the least
// recently used unloads beyond the limit; requests for one adapter are
// decoded together; a full queue answers 429 with Retry-After; Close
// finishes the requests in flight and then refuses new ones.
func TestServeAdaptersQueueDrain(t *testing.T) {
	fx := newFixture(t, 3, Options{Sequences: 4, Context: 256, MaxAdapters: 2, Queue: 4}, "")
	ref := newReference(t, fx)
	chat := fx.srv.URL + "/v1/chat/completions"
	ctx := context.Background()
	for _, m := range []string{"a1", "a2", "a3"} {
		if status, _, body := post(t, ctx, chat, "", chatBody(m, "Hi", 2, false)); status != 200 {
			t.Fatalf("%s: %d %s", m, status, body)
		}
	}
	st := fx.engine.Stats()
	if st.AdapterLoads != 3 || st.AdapterUnloads != 1 {
		t.Fatalf("after a1, a2, a3 with --max-adapters 2: %d loads, %d unloads; want 3 and 1", st.AdapterLoads, st.AdapterUnloads)
	}
	loaded := map[string]bool{}
	for _, m := range fx.engine.Models() {
		loaded[m.Name] = m.Loaded
	}
	if loaded["a1"] || !loaded["a2"] || !loaded["a3"] {
		t.Fatalf("loaded %v: want a1 (least recently used) unloaded", loaded)
	}

	// Four requests for a2 at once: decoded together, answers unchanged.
	want := ref.answer(t, "a2", prompts[0], 12)
	var wg sync.WaitGroup
	got := make([]string, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, body := post(t, ctx, chat, "", chatBody("a2", prompts[0], 12, i%2 == 1))
			if status != 200 {
				t.Errorf("a2 #%d: %d %s", i, status, body)
				return
			}
			got[i] = answerOf(t, body, i%2 == 1)
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != want {
			t.Errorf("a2 #%d together with others: %q, alone in-process %q", i, g, want)
		}
	}
	if st := fx.engine.Stats(); st.Together < 2 {
		t.Errorf("four requests for one adapter were never decoded together (at most %d per call)", st.Together)
	}

	// More requests than the queue holds: some wait, the rest get 429.
	var ok200, got429 atomic.Int32
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, retry, body := post(t, ctx, chat, "", chatBody([]string{"a1", "a3"}[i%2], "Hi", 8, false))
			switch status {
			case 200:
				ok200.Add(1)
			case 429:
				if n, err := strconv.Atoi(retry); err != nil || n < 1 {
					t.Errorf("429 with Retry-After %q", retry)
				}
				oneError(t, "429", body)
				got429.Add(1)
			default:
				t.Errorf("status %d: %s", status, body)
			}
		}()
	}
	wg.Wait()
	if got429.Load() == 0 || ok200.Load() == 0 {
		t.Fatalf("16 requests at a queue of 4: %d answered, %d refused; want some of each", ok200.Load(), got429.Load())
	}

	// Close drains: requests taken are answered in full, new ones refused.
	var streams []*Stream
	for _, m := range []string{"a1", "a2", "base"} {
		s, err := fx.engine.Submit(ctx, Request{Model: m, Messages: msgs(prompts[1]), MaxTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	fx.engine.Close()
	for i, s := range streams {
		for range s.Pieces() {
		}
		res, err := s.Result()
		if err != nil || res.Text == "" || res.CompletionTokens == 0 {
			t.Errorf("request %d in flight at Close: %+v, %v", i, res, err)
		}
	}
	if _, err := fx.engine.Submit(ctx, Request{Model: "a1", Messages: msgs("Hi")}); err == nil || err.(*Error).Status != 503 {
		t.Fatalf("a request after Close: %v, want 503", err)
	}
}

// TestServeLoad: 8 clients ask 3 adapters at once for a bounded time,
// streaming and not, on loopback; one more client leaves in the middle of
// a long stream. Every request is answered (as in-process generation
// answers it) or refused with 429 and Retry-After; none is lost; the
// departed client's sequence is freed; the server's memory does not grow.
func TestServeLoad(t *testing.T) {
	seconds := 20
	if s, err := strconv.Atoi(os.Getenv("FINETUNE_SERVE_LOAD_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	fx := newFixture(t, 3, Options{Sequences: 4, Context: 512, MaxAdapters: 3, Queue: 3}, "")
	ref := newReference(t, fx)
	chat := fx.srv.URL + "/v1/chat/completions"
	ctx := context.Background()
	const maxTokens = 8
	models := []string{"a1", "a2", "a3"}
	for _, m := range models {
		for _, p := range prompts {
			ref.answer(t, m, p, maxTokens)
		}
		if status, _, body := post(t, ctx, chat, "", chatBody(m, prompts[0], maxTokens, false)); status != 200 {
			t.Fatalf("warm-up %s: %d %s", m, status, body)
		}
	}
	before := rssMB(t)
	answeredBefore := fx.engine.Stats().Answered

	// The client that leaves: a long stream, read until its first words.
	left := make(chan error, 1)
	go func() {
		cx, cancel := context.WithCancel(ctx)
		defer cancel()
		body := chatBody("a1", "Tell me a long story about the sea.", 400, true)
		for {
			// A new request each try: a refused one's body has been read.
			req, _ := http.NewRequestWithContext(cx, http.MethodPost, chat, strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				left <- err
				return
			}
			if resp.StatusCode == 429 {
				resp.Body.Close()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"content"`) {
					break
				}
			}
			cancel()
			resp.Body.Close()
			left <- nil
			return
		}
	}()

	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var sent, answered, refused atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				m, p, stream := models[(c+i)%3], prompts[(c/3+i)%len(prompts)], (c+i)%2 == 0
				sent.Add(1)
				status, retry, body := post(t, ctx, chat, "", chatBody(m, p, maxTokens, stream))
				switch status {
				case 200:
					if got, want := answerOf(t, body, stream), ref.answer(t, m, p, maxTokens); got != want {
						t.Errorf("client %d, %s, %q: %q under load, %q in-process", c, m, p, got, want)
					}
					answered.Add(1)
				case 429:
					n, err := strconv.Atoi(retry)
					if err != nil || n < 1 {
						t.Errorf("429 without a Retry-After: %q", retry)
						n = 1
					}
					refused.Add(1)
					time.Sleep(time.Duration(n) * time.Second) // as clients do
				default:
					t.Errorf("client %d: status %d: %s", c, status, body)
				}
			}
		}()
	}
	wg.Wait()
	if err := <-left; err != nil {
		t.Fatalf("the leaving client: %v", err)
	}
	// The left stream's sequence is freed, not decoded to its 400 tokens.
	var st Stats
	for range 100 {
		if st = fx.engine.Stats(); st.Active == 0 && st.Waiting == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Active != 0 || st.Waiting != 0 {
		t.Fatalf("after the load: %d requests still decoding, %d waiting", st.Active, st.Waiting)
	}
	if st.Cancelled < 1 {
		t.Errorf("the client that left was not counted as cancelled: %+v", st)
	}
	if got := st.Answered - answeredBefore; got != uint64(answered.Load()) {
		t.Errorf("the server answered %d requests, the clients got %d", got, answered.Load())
	}
	if sent.Load() != answered.Load()+refused.Load() {
		t.Errorf("%d sent, %d answered, %d refused: some were lost", sent.Load(), answered.Load(), refused.Load())
	}
	if answered.Load() < 8 {
		t.Errorf("only %d requests answered in %ds", answered.Load(), seconds)
	}
	after := rssMB(t)
	t.Logf("%ds: %d requests, %d answered, %d refused (429); at most %d decoded together; RSS %.0f MB before, %.0f MB after",
		seconds, sent.Load(), answered.Load(), refused.Load(), st.Together, before, after)
	if after-before > 64 {
		t.Errorf("RSS grew from %.0f MB to %.0f MB under load", before, after)
	}
}

func msgs(prompt string) []datasets.Message {
	return []datasets.Message{{Role: "user", Content: prompt}}
}

// rssMB is this process's resident memory.
func rssMB(t testing.TB) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("SKIPPED: no /proc/self/status to measure memory (%v): the load test needs Linux", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
