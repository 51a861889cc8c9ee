package runs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/openaitest"
)

// faultRecipe is a distill recipe whose teacher is the server at baseURL,
// asked 4 plain prompts (q0..q3) with the key from FT_TEST_DISTILL_KEY.
func faultRecipe(t *testing.T, dir, baseURL, patience string) string {
	t.Helper()
	prompts := filepath.Join(dir, "prompts.jsonl")
	var b strings.Builder
	for i := range 4 {
		fmt.Fprintf(&b, "{\"prompt\": \"q%d\"}\n", i)
	}
	if err := os.WriteFile(prompts, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`name: faults
base: base.gguf
distill:
  prompts: %s
  teacher: teacher
eval:
  contestants:
    - name: teacher
      kind: openai
      model: m
      base_url: %s
      api_key_env: FT_TEST_DISTILL_KEY
      concurrency: 2
      price_in: 1
      price_out: 2
%s
  metrics:
    - name: rouge_l
`, prompts, baseURL, patience)
}

// TestDistillFaults distills from the loopback OpenAI-compatible server of
// the eval tests in each way it misbehaves: every distillation ends within
// a bound the teacher's timeout and attempts give, counts the requests that
// got no answer, writes a run folder only with answers (whole files, every
// line a row), and the key, echoed back by the server in errors, headers
// and answers, is in no file, log line or error.
func TestDistillFaults(t *testing.T) {
	api := openaitest.New(t)
	t.Setenv("FT_TEST_DISTILL_KEY", openaitest.EchoedKey)
	patience := "      timeout: 1s\n      attempts: 2"
	for _, c := range []struct {
		behaviour string
		rows      int // answers kept; 0: no run folder
		status    string
	}{
		{"ok", 4, "ok"},
		{"s429", 0, "failed"},
		{"s500", 0, "failed"},
		{"hang", 0, "failed"},
		{"nonjson", 0, "failed"},
		{"s401", 0, "failed"},
		{"midbody", 0, "failed"},
		{"partial", 3, "partial"},
		{"answer", 4, "ok"},
		{"header", 4, "ok"},
	} {
		t.Run(c.behaviour, func(t *testing.T) {
			dir := t.TempDir()
			r := recipe(t, dir, faultRecipe(t, dir, api.URL(c.behaviour), patience))
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			root := filepath.Join(dir, "runs")
			start := time.Now()
			run, rep, err := Distill(context.Background(), r, DistillOptions{Root: root, Logger: log})
			took := time.Since(start)
			// Two attempts of 1s, twice unanswered at most, backoff
			// of at most 1s and 2s: well within 8s.
			if took > 8*time.Second {
				t.Errorf("took %s", took)
			}
			var errText string
			if err != nil {
				errText = err.Error()
			}
			if c.rows == 0 {
				if err == nil || run != nil {
					t.Fatalf("no answer, yet no error (%v)", run)
				}
				if rep == nil || rep.Failed != 4 || rep.Filtered.Failed != 4 || rep.Status != c.status || rep.Error == "" {
					t.Fatalf("report %+v", rep)
				}
				entries, _ := os.ReadDir(filepath.Join(root, "faults"))
				for _, e := range entries {
					if e.Name() != DistillCacheDir {
						t.Errorf("a failed distillation left %s", e.Name())
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				run.Close()
				if rep.Rows != c.rows || rep.Status != c.status || rep.Failed != 4-c.rows || rep.Filtered.Failed != 4-c.rows {
					t.Fatalf("report %+v", rep)
				}
				rows := readDistilled(t, run.Path(DistilledFile))
				if len(rows) != c.rows {
					t.Fatalf("%d rows, want %d", len(rows), c.rows)
				}
				for _, row := range rows {
					if row.Distill.CostUSD != (float64(row.Distill.Usage.PromptTokens)*1+float64(row.Distill.Usage.CompletionTokens)*2)/1e6 || row.Distill.CostUSD == 0 {
						t.Errorf("row cost %v for usage %+v", row.Distill.CostUSD, row.Distill.Usage)
					}
				}
				if want := 4 * (7*1 + 3*2) / 1e6 * float64(c.rows) / 4; rep.CostUSD != want {
					t.Errorf("cost %v, want %v", rep.CostUSD, want)
				}
			}
			t.Logf("%s: %s, %d requests, %d rows; %s", c.behaviour, took.Round(time.Millisecond), api.Count(c.behaviour), c.rows, rep.Error)
			noKeyInFiles(t, dir, logs.String(), errText, rep.Error)
			if c.behaviour == "answer" {
				rows := readDistilled(t, run.Path(DistilledFile))
				if !strings.Contains(rows[0].Messages[1].Content, "[redacted]") {
					t.Errorf("the echoed key's answer: %q", rows[0].Messages[1].Content)
				}
			}
		})
	}
}

// noKeyInFiles fails the test when the echoed key (or a third of it) is in
// a file under dir or in one of the texts.
func noKeyInFiles(t *testing.T, dir string, texts ...string) {
	t.Helper()
	frag := openaitest.EchoedKey[len(openaitest.EchoedKey)/3:]
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(frag)) {
			t.Errorf("%s holds the key", p)
		}
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("%s: a temporary file left behind", p)
		}
		return nil
	})
	for _, s := range texts {
		if strings.Contains(s, frag) {
			t.Errorf("the key is in: %s", s)
		}
	}
}

// TestDistillBudget: a teacher that answers two prompts and then nothing is
// given up when its budget is spent, and the distillation keeps the two
// answers it has.
func TestDistillBudget(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server sees the client leave only once the body is read
		if served.Add(1) > 2 {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"an answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}`)
	}))
	defer srv.Close()
	t.Setenv("FT_TEST_DISTILL_KEY", "sk-budget-test-key")
	dir := t.TempDir()
	body := strings.Replace(faultRecipe(t, dir, srv.URL+"/v1", "      timeout: 30s\n      budget: 1500ms"), "concurrency: 2", "concurrency: 1", 1)
	r := recipe(t, dir, body)
	start := time.Now()
	run, rep, err := Distill(context.Background(), r, DistillOptions{Root: filepath.Join(dir, "runs")})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the 1.5s budget took %s", took)
	}
	if rep.Rows != 2 || rep.Status != "partial" || !strings.Contains(rep.Error, "budget") || rep.Filtered.Failed != 2 {
		t.Fatalf("report %+v", rep)
	}
	// Different prompts, the same answer: not duplicates (those are per prompt).
	if rows := readDistilled(t, run.Path(DistilledFile)); len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
}
