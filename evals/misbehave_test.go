package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/openaitest"
)

// echoedKey is the key the misbehaving servers are sent and echo back.
const echoedKey = openaitest.EchoedKey

func newMisbehavingAPI(t *testing.T) *openaitest.API { return openaitest.New(t) }

// TestMisbehavingEndpoints runs an OpenAI-compatible contestant against
// each way a server can misbehave, beside a contestant that answers: the
// status says what happened (ok only when every case was answered), the
// error says why with the key removed, the contestant gives up within a
// bound the settings give, the other contestant's results are those it
// has alone, comparisons with a contestant that answered nothing cover no
// case, and the key is in no file of the output folder, no log line and no
// progress report.
func TestMisbehavingEndpoints(t *testing.T) {
	api := newMisbehavingAPI(t)
	t.Setenv("FT_TEST_ECHO_KEY", echoedKey)
	cases := []Case{qaCase("q0", "Q0", ""), qaCase("q1", "Q1", ""), qaCase("q2", "Q2", "")}
	suite := Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}
	retry := Retry{Attempts: 3, Timeout: 400 * time.Millisecond, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	upper := func(c Case) (string, error) { return strings.ToUpper(lastUser(c)), nil }

	alone, err := Run(context.Background(), suite, []Contestant{newScripted("fine", upper)}, RunOptions{Bootstrap: 200})
	if err != nil {
		t.Fatal(err)
	}
	want := alone.Contestant("fine")

	for _, tc := range []struct {
		behaviour string
		status    string
		answered  int
		err       string // in the contestant's error
		within    time.Duration
		requests  int // at most
	}{
		{"ok", "ok", 3, "", 3 * time.Second, 3},
		{"nonjson", "failed", 0, "not a chat completion (Content-Type \"text/html; charset=utf-8\"; is base_url the API's, ending in /v1?)", 3 * time.Second, 4},
		{"hang", "failed", 0, "the server answered nothing (a request sent 2 times waited 400ms each time)", 4 * time.Second, 6},
		{"midbody", "failed", 0, "gave up after 3 attempts: HTTP 200: the response was cut off", 3 * time.Second, 9},
		{"s401", "failed", 0, "HTTP 401 Unauthorized: Incorrect API key provided: [redacted].", 3 * time.Second, 3},
		{"s403", "failed", 0, "HTTP 403 Forbidden: forbidden by policy request headers: Authorization: Bearer [redacted] X-Api-Key: [redacted]", 3 * time.Second, 4},
		{"s404", "failed", 0, "HTTP 404 Not Found: The model `m` does not exist", 3 * time.Second, 4},
		{"s429", "failed", 0, "gave up after 3 attempts: HTTP 429 Too Many Requests: Rate limit reached for key [redacted]", 3 * time.Second, 9},
		{"s500", "failed", 0, "gave up after 3 attempts: HTTP 500 Internal Server Error: upstream exploded (auth Bearer [redacted])", 3 * time.Second, 9},
		{"header", "ok", 3, "", 3 * time.Second, 3},
		{"answer", "ok", 3, "", 3 * time.Second, 3},
		{"partial", "partial", 2, "gave up after 3 attempts: HTTP 500 Internal Server Error: the model crashed on this one ([redacted])", 3 * time.Second, 5},
	} {
		t.Run(tc.behaviour, func(t *testing.T) {
			c, err := NewOpenAI(tc.behaviour, OpenAIOptions{BaseURL: api.URL(tc.behaviour), Model: "m", APIKeyEnv: "FT_TEST_ECHO_KEY", Concurrency: 4, Retry: retry})
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			logger, logs := captureLogs()
			var progress []Progress
			var mu sync.Mutex
			start := time.Now()
			res, err := Run(context.Background(), suite, []Contestant{newScripted("fine", upper), c}, RunOptions{
				CacheDir: filepath.Join(out, "cache"), Logger: logger, Bootstrap: 200, WaitReports: 100 * time.Millisecond,
				Progress: func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %v, %d requests", tc.behaviour, took.Round(time.Millisecond), api.Count(tc.behaviour))
			if err := WriteReports(out, res, ReportExtras{}); err != nil {
				t.Fatal(err)
			}
			got := res.Contestant(tc.behaviour)
			if got.Status != tc.status || got.Answered != tc.answered || got.Failed != 3-tc.answered || got.Asked != 3 {
				t.Errorf("status %s, %d answered, %d failed of %d; want %s, %d answered (error %q)", got.Status, got.Answered, got.Failed, got.Asked, tc.status, tc.answered, got.Error)
			}
			if tc.err == "" && got.Error != "" || !strings.Contains(got.Error, tc.err) {
				t.Errorf("error %q, want it to hold %q", got.Error, tc.err)
			}
			if took > tc.within {
				t.Errorf("took %v, want at most %v", took, tc.within)
			}
			if n := api.Count(tc.behaviour); n > tc.requests {
				t.Errorf("%d requests, want at most %d", n, tc.requests)
			}
			// The other contestant is reported as it is alone.
			f := res.Contestant("fine")
			if f.Status != want.Status || f.Answered != want.Answered || !reflect.DeepEqual(f.Scores, want.Scores) {
				t.Errorf("fine beside %s: %s %d %+v; alone: %s %d %+v", tc.behaviour, f.Status, f.Answered, f.Scores, want.Status, want.Answered, want.Scores)
			}
			// Comparisons say how many cases they cover, never a tie
			// over none.
			cmp := res.Compare(tc.behaviour, "fine", "em")
			if cmp == nil || cmp.N != tc.answered || cmp.Asked != 3 || cmp.Incomplete != (tc.answered < 3) || cmp.N == 0 && cmp.Ties != 0 {
				t.Errorf("comparison with fine: %+v", cmp)
			}
			if s, ok := got.Scores["em"]; tc.answered == 0 && ok || tc.answered > 0 && (s.N != tc.answered || s.Incomplete != (tc.answered < 3)) {
				t.Errorf("score %+v (present %v)", s, ok)
			}
			if (tc.status != "ok") == (got.FirstError == "") {
				t.Errorf("status %s, first error %q", got.Status, got.FirstError)
			}
			switch tc.behaviour {
			case "answer":
				if a := res.Cases[1].Answers[1].Text; a != "you sent [redacted] for q1" {
					t.Errorf("answer %q", a)
				}
			case "hang":
				// While it waited, progress said what for.
				var waits []string
				for _, p := range progress {
					if p.Wait != nil && p.Contestant == "hang" {
						waits = append(waits, p.Wait.String())
					}
				}
				if len(waits) < 2 || !strings.HasPrefix(waits[0], "3 requests waiting for an answer, the oldest for ") ||
					!slices.ContainsFunc(waits, func(w string) bool { return strings.Contains(w, "sent again, after: no answer within 400ms") }) {
					t.Errorf("waiting reports %q", waits)
				}
			}
			for _, p := range progress {
				if p.Err != nil && strings.Contains(p.Err.Error(), echoedKey) {
					t.Errorf("progress holds the key: %v", p.Err)
				}
			}
			noKeyIn(t, out, logs.String())
		})
	}
	// What the servers were sent: greedy decoding says temperature 0.
	for _, b := range api.Bodies("ok") {
		if temp, ok := b["temperature"]; !ok || temp != float64(0) {
			t.Errorf("temperature sent: %v (present %v), want 0", temp, ok)
		}
	}
}

// noKeyIn fails the test when echoedKey (or a third of it, what clipping
// could leave) is in any file under dir or in the texts.
func noKeyIn(t *testing.T, dir string, texts ...string) {
	t.Helper()
	frag := echoedKey[len(echoedKey)/3:]
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(frag)) {
			t.Errorf("%s holds the key", p)
		}
		return nil
	})
	if n < 3 {
		t.Errorf("%d files under %s, want the reports at least", n, dir)
	}
	for _, s := range texts {
		if strings.Contains(s, frag) {
			t.Errorf("the key is in:\n%s", s)
		}
	}
}

// TestRedactor: the key wherever it is, credential header values and URL
// key parameters in error texts, and nothing else.
func TestRedactor(t *testing.T) {
	r := &redactor{}
	r.add(echoedKey)
	r.add("short") // too short to be taken for a secret
	for in, want := range map[string]string{
		"key " + echoedKey + "!":                              "key [redacted]!",
		"Authorization: Bearer sk-other-1234567":              "Authorization: Bearer [redacted]",
		`{"authorization":"Bearer abcdefgh","x":1}`:           `{"authorization":"Bearer [redacted]","x":1}`,
		"map[Api-Key:[abc123456] Accept:[json]]":              "map[Api-Key:[[redacted]] Accept:[json]]",
		"x-api-key=abcdef123; other=1":                        "x-api-key=[redacted]; other=1",
		`Post "https://h/v1/chat?api_key=s3cr3t&v=2": EOF`:    `Post "https://h/v1/chat?api_key=[redacted]&v=2": EOF`,
		"sent bearer eyJhbGciOiJIUzI1NiJ9.e30.x to the proxy": "sent bearer [redacted] to the proxy",
		"a short answer about invalid_api_key codes":          "a short answer about invalid_api_key codes",
		"Authorization: Bearer [redacted]":                    "Authorization: Bearer [redacted]",
	} {
		if got := r.errText(in); got != want {
			t.Errorf("errText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := r.text("Authorization: Bearer xyz123456 and " + echoedKey); got != "Authorization: Bearer xyz123456 and [redacted]" {
		t.Errorf("text: %q (a model's answer keeps header-like phrases; only the key goes)", got)
	}
	// A logger through the redactor.
	l, buf := captureLogs()
	r.logger(l).Warn("failed: "+echoedKey, "err", fmt.Errorf("HTTP 401: %s", echoedKey), "auth", "Authorization: Bearer zzzzzzzz", "data", map[string]string{"k": echoedKey})
	if s := buf.String(); strings.Contains(s, echoedKey) || strings.Contains(s, "zzzzzzzz") || !strings.Contains(s, "[redacted]") {
		t.Errorf("log line %q", s)
	}
}

// TestTimeoutCountsSilence: the timeout is a wait without any answer from
// the server, so requests queued behind others on a server that answers
// one at a time are not given up while it works through them; a server
// that stops answering is given up after two timeouts of one request.
func TestTimeoutCountsSilence(t *testing.T) {
	var busy sync.Mutex
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy.Lock() // one request at a time, each 150ms: the fourth waits 600ms
		defer busy.Unlock()
		select {
		case <-time.After(150 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"yes"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	defer srv.Close()
	var cases []Case
	for i := 0; i < 8; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	c, err := NewOpenAI("queued", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "m", Concurrency: 4, Retry: Retry{Attempts: 1, Timeout: 400 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}, []Contestant{c}, RunOptions{Bootstrap: 100})
	if err != nil {
		t.Fatal(err)
	}
	if q := res.Contestant("queued"); q.Status != "ok" || q.Answered != 8 || served.Load() != 8 {
		t.Errorf("queued behind each other: %s, %d answered (%s), %d served", q.Status, q.Answered, q.Error, served.Load())
	}
	// P95 latency is well above the timeout: the clock restarted with
	// every answer.
	if p95 := res.Contestant("queued").LatencyP95MS; p95 < 450 {
		t.Errorf("p95 latency %v ms: no request waited longer than the timeout, the test proves nothing", p95)
	}
	if math.IsNaN(res.Contestant("queued").Scores["em"].Value) {
		t.Error("no score")
	}
}

// TestBudget: a contestant whose time budget runs out stops, the cases it
// answered kept: partial, with the budget as the reason.
func TestBudget(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		if fmt.Sprint(body["messages"]) != "[map[content:q0 role:user]]" {
			<-r.Context().Done() // only q0 is answered
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"yes"}}]}`)
	}))
	defer srv.Close()
	var cases []Case
	for i := 0; i < 6; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	c, err := NewOpenAI("slow", OpenAIOptions{BaseURL: srv.URL + "/v1", Model: "m", Concurrency: 2, Retry: Retry{Timeout: time.Minute, Budget: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}, []Contestant{c}, RunOptions{Bootstrap: 100})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Contestant("slow")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v with a budget of 500ms", took)
	}
	if s.Status != "partial" || s.Answered != 1 || s.Error != "its time budget of 500ms ran out" {
		t.Errorf("%s, %d answered: %q", s.Status, s.Answered, s.Error)
	}
	b, _ := json.Marshal(s.Info)
	if !strings.Contains(string(b), `"retry":{"attempts":3,"timeout":"1m0s","budget":"500ms"}`) {
		t.Errorf("info %s", b)
	}
	var back Info
	if err := json.Unmarshal(b, &back); err != nil || back.Retry == nil || *back.Retry != (Retry{Attempts: 3, Timeout: time.Minute, Budget: 500 * time.Millisecond}) {
		t.Errorf("info read back: %+v (%v)", back.Retry, err)
	}
}

// starter is a contestant that takes a while to start.
type starter struct{ *scripted }

func (s starter) Start(ctx context.Context) error {
	select {
	case <-time.After(500 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestWaitReportsWhileStarting: a contestant that takes its time to start
// (loading a model) is reported as starting, with how long.
func TestWaitReportsWhileStarting(t *testing.T) {
	c := starter{newScripted("slow", func(Case) (string, error) { return "yes", nil })}
	var waits []string
	_, err := Run(context.Background(), Suite{Cases: []Case{qaCase("q", "yes", "")}, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}, []Contestant{c},
		RunOptions{WaitReports: 100 * time.Millisecond, Progress: func(p Progress) {
			if p.Wait != nil {
				waits = append(waits, p.Wait.String())
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^starting for [0-9.]+m?s$`)
	if len(waits) < 2 || !re.MatchString(waits[0]) || !re.MatchString(waits[len(waits)-1]) {
		t.Errorf("waiting reports %q", waits)
	}
}

// TestCancelledCasesAreNotFailures: Ctrl-C while requests wait ends the
// run at once with the context's error, and no case is reported failed.
func TestCancelledCasesAreNotFailures(t *testing.T) {
	api := newMisbehavingAPI(t)
	c, err := NewOpenAI("hang", OpenAIOptions{BaseURL: api.URL("hang"), Model: "m", Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var cases []Case
	for i := 0; i < 6; i++ {
		cases = append(cases, qaCase(fmt.Sprintf("q%d", i), "yes", ""))
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	logger, logs := captureLogs()
	var reports []Progress
	start := time.Now()
	_, err = Run(ctx, Suite{Cases: cases, Metrics: []Metric{{Name: "em", Kind: ExactMatch}}}, []Contestant{newScripted("fine", func(Case) (string, error) { return "yes", nil }), c},
		RunOptions{Logger: logger, WaitReports: 100 * time.Millisecond, Progress: func(p Progress) { reports = append(reports, p) }})
	if err != context.Canceled {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v to stop", took)
	}
	waits := 0
	for _, p := range reports {
		if p.Err != nil || p.Failed > 0 {
			t.Errorf("a cancelled case was reported: %+v", p)
		}
		if p.Wait != nil {
			waits++
		}
	}
	if waits == 0 {
		t.Error("no waiting report before Ctrl-C")
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings after Ctrl-C:\n%s", logs)
	}
}
