package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestTrainThenEval: a run's adapter evaluated against its base through
// the recipe's suite writes the three reports, and a gate not met exits
// with code 3.
func TestTrainThenEval(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, `eval:
  metrics:
    - name: rouge_l
    - name: exact_match
  generation:
    max_tokens: 6
`)
	// Evaluate on questions the adapter was trained on: this tests the
	// plumbing, not generalisation.
	dir := filepath.Dir(recipe)
	train, _ := os.ReadFile(filepath.Join(dir, "train.jsonl"))
	lines := strings.SplitAfterN(string(train), "\n", 4)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(strings.Join(lines[:3], "")), 0o644)
	run := filepath.Join(t.TempDir(), "run")
	tr := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=60")
	if tr.code != 0 {
		t.Fatalf("train: %s", tr.stderr)
	}
	// The three eval prompts are training prompts: the leak is a warning
	// in the terminal, train.log and the eval report, with the count.
	const leak = "3 of 3 eval prompts have an exact or near duplicate in training (3 training records, 3 exact"
	log, _ := os.ReadFile(filepath.Join(run, "train.log"))
	if !strings.Contains(tr.stderr, leak) || !strings.Contains(string(log), leak) {
		t.Fatalf("train does not warn of the leak in the terminal and train.log:\n%s\n%s", tr.stderr, log)
	}
	r := cli(t, "eval", recipe, "--run", run)
	if r.code != 0 {
		t.Fatalf("eval: %s", r.stderr)
	}
	md, _ := os.ReadFile(filepath.Join(run, "eval", "report.md"))
	html, _ := os.ReadFile(filepath.Join(run, "eval", "report.html"))
	if !strings.Contains(r.stderr, leak) || !strings.Contains(string(md), "**Warning:** train/eval leakage: "+leak) || !strings.Contains(string(html), "Warning: train/eval leakage: "+leak) {
		t.Fatalf("the eval report does not state the leak:\n%s\n%s", r.stderr, md)
	}
	for _, f := range []string{"results.json", "report.md", "report.html"} {
		if _, err := os.Stat(filepath.Join(run, "eval", f)); err != nil {
			t.Fatalf("no %s", f)
		}
	}
	if !strings.Contains(r.stdout, "tuned - base") || !strings.Contains(r.stdout, "report: ") {
		t.Fatalf("headline:\n%s", r.stdout)
	}
	var res struct {
		Contestants []struct {
			Name   string
			Scores map[string]struct{ Value float64 }
		}
	}
	b, _ := os.ReadFile(filepath.Join(run, "eval", "results.json"))
	if err := json.Unmarshal(b, &res); err != nil || len(res.Contestants) != 2 {
		t.Fatalf("results.json: %v", err)
	}
	base, tuned := res.Contestants[0].Scores["rouge_l"].Value, res.Contestants[1].Scores["rouge_l"].Value
	if tuned <= base {
		t.Fatalf("tuned ROUGE-L %.3f is not above base %.3f", tuned, base)
	}
	// The gate: a demand the run cannot meet fails the command.
	g := cli(t, "eval", recipe, "--run", run, "--fail-under", "tuned.rouge_l - base.rouge_l >= 2")
	wantCleanError(t, g, "--fail-under not met")
	if g.code != exitGate {
		t.Fatalf("a gate not met exits with %d, want %d (not 1, an error)", g.code, exitGate)
	}
	if !strings.Contains(cli(t, "eval", recipe).stderr, "--run RUN_DIR or --adapter") {
		t.Fatal("eval without an adapter does not say how to give one")
	}
}

// TestExportMerge merges a run's adapter into its base through the CLI:
// the merged model loads in llama.cpp and greedy generation starts as the
// base with the adapter does, not as the base alone. (W + s·B·A)·x and
// W·x + s·B·(A·x) round differently, so a longer greedy continuation
// parts at the first near-tie; adapters.TestMergeEqualsAdapter compares
// the logits.
func TestExportMerge(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=30"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	merged := filepath.Join(t.TempDir(), "merged.gguf")
	if r := cli(t, "export", "merge", run, "--out", merged, "--type", "f32"); r.code != 0 {
		t.Fatalf("export merge: %s", r.stderr)
	}
	prompt := "Q: Who wrote Hamlet?\nA:"
	a := cli(t, "generate", "--model", model, "--adapter", filepath.Join(run, "adapter.gguf"), "--prompt", prompt, "--max-tokens", "6", "--threads", "1")
	b := cli(t, "generate", "--model", merged, "--prompt", prompt, "--max-tokens", "6", "--threads", "1")
	if a.code != 0 || b.code != 0 || a.stdout != b.stdout {
		t.Fatalf("base+adapter said %q, merged model said %q (%s %s)", a.stdout, b.stdout, a.stderr, b.stderr)
	}
	if plain := cli(t, "generate", "--model", model, "--prompt", prompt, "--max-tokens", "6", "--threads", "1"); plain.stdout == b.stdout {
		t.Fatalf("the merged model says what the base says (%q): the adapter was not folded in", b.stdout)
	}
	if u := cli(t, "export", "merge", run, "--out", merged, "--type", "q4_k"); u.code != 2 || !strings.Contains(u.stderr, "unknown type") || !strings.Contains(u.stderr, "q4_k_m") {
		t.Fatalf("an unknown --type: exit %d, %q", u.code, u.stderr)
	}
	if u := cli(t, "export", "merge", filepath.Join(run, "adapter.gguf"), "--out", merged); u.code != 2 || !strings.Contains(u.stderr, "--base is required") {
		t.Fatalf("an adapter without --base: exit %d, %q", u.code, u.stderr)
	}
}

// evalKey is the API key the loopback servers of the eval tests are sent;
// some echo it back.
const evalKey = "sk-proj-CLIECHO-9f8e7d6c5b4a3210"

// echoServer is an OpenAI-compatible server whose first path segment says
// how it behaves: ok answers, hang never does, nonjson serves a web page,
// s401 rejects the key and echoes it, answer echoes it in its answers,
// partial fails the last case. It counts requests by behaviour and
// question.
type echoServer struct {
	*httptest.Server
	mu    sync.Mutex
	asked map[string]int
}

func newEchoServer(t *testing.T, hold <-chan struct{}) *echoServer {
	s := &echoServer{asked: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		behaviour, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		var body struct {
			Messages []struct{ Content string }
		}
		json.NewDecoder(r.Body).Decode(&body)
		q := body.Messages[len(body.Messages)-1].Content
		s.mu.Lock()
		s.asked[behaviour+" "+q]++
		s.mu.Unlock()
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		answer := func(text string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":%q}}],"usage":{"prompt_tokens":5,"completion_tokens":2}}`, text)
		}
		switch behaviour {
		case "ok":
			answer(" Lima.")
		case "slow": // answers its first question at once, the others once hold is closed
			if !strings.Contains(q, "Which planet is red") {
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
			answer(" Mars.")
		case "hang":
			<-r.Context().Done()
		case "nonjson":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html><body>Hello %s</body></html>", key)
		case "s401":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s"}}`, key)
		case "answer":
			w.Header().Set("X-Echo", "Bearer "+key)
			answer(" my key is " + key)
		case "partial":
			if strings.Contains(q, "smallest prime") {
				http.Error(w, "crashed on "+key, http.StatusInternalServerError)
				return
			}
			answer(" Two.")
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *echoServer) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.asked {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// noKey fails the test when evalKey is in any file under dir or in texts.
func noKey(t *testing.T, dir string, texts ...string) {
	t.Helper()
	files := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(evalKey[8:])) {
				t.Errorf("%s holds the API key", p)
			}
		}
		return nil
	})
	if files < 3 {
		t.Errorf("%d files under %s", files, dir)
	}
	for _, s := range texts {
		if strings.Contains(s, evalKey[8:]) {
			t.Errorf("the API key is in:\n%s", s)
		}
	}
}

// TestEvalMisbehavingEndpoints: an eval beside OpenAI-compatible servers
// that hang, serve a web page, reject and echo the key, echo it in their
// answers and fail a case: the headline says each one's status and why,
// comparisons show how many cases they cover (none is not a tie), the
// hanging server is given up in about twice its timeout, the key is
// nowhere on stdout, stderr (with -v) or under the output folder, and a
// gate on a failed contestant is not met.
func TestEvalMisbehavingEndpoints(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := newEchoServer(t, nil)
	t.Setenv("FT_EVAL_TEST_KEY", evalKey)
	api := func(name, timeout string) string {
		return fmt.Sprintf("    - {name: %s, kind: openai, model: m, base_url: %q, api_key_env: FT_EVAL_TEST_KEY, timeout: %s, attempts: 2}\n", name, srv.URL+"/"+name+"/v1", timeout)
	}
	recipe := qaRecipe(t, model, "eval:\n  contestants:\n    - {name: base}\n"+api("ok", "5s")+api("hang", "1s")+api("nonjson", "5s")+api("s401", "5s")+
		api("answer", "5s")+api("partial", "5s")+"  metrics:\n    - name: exact_match\n  generation:\n    max_tokens: 4\n")
	out := filepath.Join(t.TempDir(), "eval")
	start := time.Now()
	r := cli(t, "eval", recipe, "--out", out, "-v")
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("eval: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("eval with a hanging endpoint (timeout 1s, 2 attempts): %v\n%s", took.Round(time.Millisecond), r.stdout)
	if took > 30*time.Second {
		t.Errorf("took %v", took)
	}
	for _, want := range []string{
		"cases: all 3 cases of the eval split",
		"hang failed (0 of 3 answered, 3 failed): the server answered nothing (a request sent 2 times waited 1s each time)",
		"nonjson failed (0 of 3 answered, 3 failed): HTTP 200 with a body that is not a chat completion",
		"s401 failed (0 of 3 answered, 3 failed): HTTP 401 Unauthorized: Incorrect API key provided: [redacted]",
		"partial partial (2 of 3 answered, 1 failed): gave up after 2 attempts: HTTP 500 Internal Server Error: crashed on [redacted]",
		"hang - base     exact_match  none: no case both answered",
		"0 of 3 (incomplete)", "2 of 3 (incomplete)",
		// 7 contestants: the 15 pairs of the 6 others are in report.md only.
		"(15 more differences, between contestants other than the base, in report.md)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	// Each row: contestant, status, answered, how many hit max_tokens, scores.
	for _, row := range []string{`ok\s+ok\s+3/3\s+\d of 3`, `hang\s+failed\s+0/3\s+0 of 0\s+-`, `partial\s+partial\s+2/3\s+\d of 2(, \d unknown)?\s+\S+ \[\S+, \S+\] \(n=2\)`, `answer\s+ok\s+3/3`} {
		if !regexp.MustCompile(`(?m)^` + row).MatchString(r.stdout) {
			t.Errorf("stdout has no row %s", row)
		}
	}
	if strings.Contains(r.stderr, "not asked") {
		t.Errorf("cases not asked were reported one by one:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "retrying") {
		t.Errorf("no debug line about a retry with -v:\n%s", r.stderr)
	}
	noKey(t, out, r.stdout, r.stderr)
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"> **hang failed**: the server answered nothing", "> **partial partial**: gave up after 2 attempts", "| 0 of 3 (incomplete) |", "| status | ok | ok | failed: 0 of 3 answered |"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}

	// A gate that names a failed contestant is not met, whatever its
	// numbers would say.
	g := cli(t, "eval", recipe, "--out", out, "--fail-under", "hang.cost_usd < 1")
	wantCleanError(t, g, "--fail-under not met", "hang has no cost_usd score (status failed: the server answered nothing")
	if p := cli(t, "eval", recipe, "--out", out, "--fail-under", "partial.exact_match >= 0"); p.code != 0 || !strings.Contains(p.stderr, "partial is partial: 2 of 3 cases answered") {
		t.Errorf("a gate on a partial contestant: exit %d\n%s", p.code, p.stderr)
	}
	noKey(t, out, g.stdout, g.stderr)
}

// TestEvalInterruptResumes: Ctrl-C while a contestant waits ends the eval
// with one line that says what the cache kept and the command that
// resumes, no case reported failed; the waiting contestant said what it
// waited for; the printed command resumes, asking only what was not
// answered.
func TestEvalInterruptResumes(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	hold := make(chan struct{})
	srv := newEchoServer(t, hold)
	t.Setenv("FT_EVAL_TEST_KEY", evalKey)
	recipe := qaRecipe(t, model, fmt.Sprintf(`eval:
  contestants:
    - {name: base}
    - {name: api, kind: openai, model: m, base_url: %q, api_key_env: FT_EVAL_TEST_KEY, concurrency: 3}
  metrics:
    - name: exact_match
  generation:
    max_tokens: 4
`, srv.URL+"/slow/v1"))
	work := t.TempDir() // the default report folder, runs/qa/eval-<time>, goes here
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "eval", recipe)
	cmd.Dir, cmd.Env = work, append(os.Environ(), "FINETUNE_AS_CLI=1")
	var stderr syncWriter
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "waiting=") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no waiting report within a minute:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("the interrupted eval exited with %v:\n%s", err, stderr.String())
	}
	log := stderr.String()
	t.Logf("stderr:\n%s", log)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		// The qa answers are longer than max_tokens 4: eval says so first.
		if !strings.HasPrefix(l, "INFO ") && !strings.HasPrefix(l, "WARN reference answers are longer than max_tokens") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ERRO interrupted: 4 answers kept in the cache ") || strings.Contains(log, "context canceled") {
		t.Fatalf("after Ctrl-C, want one line saying what the cache kept, got:\n%s", strings.Join(lines, "\n"))
	}
	if !regexp.MustCompile(`waiting="2 requests waiting for an answer, the oldest for [0-9.]+s"`).MatchString(log) {
		t.Errorf("no line said what the contestant waited for:\n%s", log)
	}
	_, resume, ok := strings.Cut(lines[0], "to resume, run: finetune ")
	args := strings.Fields(resume)
	if !ok || len(args) != 4 || args[0] != "eval" || args[1] != recipe || args[2] != "--out" {
		t.Fatalf("resume command %q", resume)
	}
	close(hold)
	again := exec.Command(exe, args...)
	again.Dir, again.Env = work, append(os.Environ(), "FINETUNE_AS_CLI=1")
	outb, err := again.CombinedOutput()
	if err != nil {
		t.Fatalf("resuming: %v\n%s", err, outb)
	}
	if n := srv.count("slow Q: Which planet is red"); n != 1 {
		t.Errorf("the answered case was asked %d times", n)
	}
	b, err := os.ReadFile(filepath.Join(work, args[3], "results.json"))
	var res struct {
		Contestants []struct {
			Name             string
			Status           string
			Answered, Cached int
		}
	}
	if err != nil || json.Unmarshal(b, &res) != nil || len(res.Contestants) != 2 {
		t.Fatalf("results.json: %v", err)
	}
	for _, c := range res.Contestants {
		if c.Status != "ok" || c.Answered != 3 || c.Cached != map[string]int{"base": 3, "api": 1}[c.Name] {
			t.Errorf("resumed %+v", c)
		}
	}
}

// syncWriter is a strings.Builder safe for a process's writes and the
// test's reads.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
