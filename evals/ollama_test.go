package evals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/finetune-dev/finetune/internal/shared"
)

// ollamaBinary finds the Ollama server scripts/build-ollama.sh builds from
// the ollama module this build uses: $FINETUNE_OLLAMA, else
// $GOPATH/bin/ollama-<version>.
func ollamaBinary() (string, string) {
	if p := os.Getenv("FINETUNE_OLLAMA"); p != "" {
		return p, p
	}
	// go.mod (one folder up from the package) pins the version; test
	// binaries carry no module build information.
	version := "unknown"
	if b, err := os.ReadFile("../go.mod"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/ollama/ollama" {
				version = f[1]
			} else if len(f) >= 3 && f[0] == "require" && f[1] == "github.com/ollama/ollama" {
				version = f[2]
			}
		}
	}
	gopath := build.Default.GOPATH
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		gopath = strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
	}
	p := filepath.Join(gopath, "bin", "ollama-"+version)
	return p, p
}

// ollamaServer runs `ollama serve` on a free loopback port with its own
// model store, until the test ends.
func ollamaServer(t *testing.T) (*url.URL, *api.Client) {
	t.Helper()
	bin, where := ollamaBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("SKIPPED: no Ollama server at %s (scripts/build-ollama.sh builds it from the pinned module; or set FINETUNE_OLLAMA)", where)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	home := t.TempDir()
	logPath := filepath.Join(home, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+addr, "OLLAMA_MODELS="+filepath.Join(home, "models"), "HOME="+home,
		"OLLAMA_NUM_PARALLEL=1", "OLLAMA_MAX_LOADED_MODELS=2", "OLLAMA_NOPRUNE=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its runners go with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("ollama serve log:\n%s", tail(string(b), 4000))
		}
	})
	u := &url.URL{Scheme: "http", Host: addr}
	client := api.NewClient(u, http.DefaultClient)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := client.Version(ctx)
		cancel()
		if err == nil {
			t.Logf("ollama %s serving on %s", v, addr)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ollama serve did not answer within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return u, client
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ollamaCreate uploads files as blobs and creates a model from them.
func ollamaCreate(t *testing.T, client *api.Client, name, model, adapter string) {
	t.Helper()
	ctx := context.Background()
	blob := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		f, _ := os.Open(path)
		defer f.Close()
		if err := client.CreateBlob(ctx, d, io.Reader(f)); err != nil {
			t.Fatalf("uploading %s: %v", path, err)
		}
		return d
	}
	req := &api.CreateRequest{Model: name, Files: map[string]string{filepath.Base(model): blob(model)}, Template: "{{ .Prompt }}"}
	if adapter != "" {
		req.Adapters = map[string]string{filepath.Base(adapter): blob(adapter)}
	}
	stream := false
	req.Stream = &stream
	if err := client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}

// TestOllamaContestant serves stories260K and the adapter trained in the
// test from a real Ollama server built from the pinned ollama module, and
// evaluates them beside the same model run in-process: greedy answers
// agree, the tuned model served by Ollama answers the questions, and a
// model the server lacks fails alone.
func TestOllamaContestant(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	u, client := ollamaServer(t)
	adapter, _ := tunedAdapter(t, model)
	ollamaCreate(t, client, "stories", model, "")
	ollamaCreate(t, client, "stories-tuned", model, adapter)

	// Ollama's sampler applies a repeat penalty of 1.1 unless told
	// otherwise; the in-process contestants have none. One thread: ggml's
	// threads spin-wait, and the runners share 2 cores with the
	// in-process contestants.
	greedy := map[string]any{"repeat_penalty": 1.0, "num_thread": 1}
	newOllama := func(name, m string) *Ollama {
		c, err := NewOllama(name, OllamaOptions{Host: u.String(), Model: m, Settings: qaSettings, Options: greedy, Concurrency: 1,
			Retry: Retry{Attempts: 3, Base: 100 * time.Millisecond, Timeout: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cs := []Contestant{
		newLocal(t, "base", model, nil, 8, qaSettings),
		newLocal(t, "tuned", model, []AdapterSpec{{Path: adapter}}, 8, qaSettings),
		newOllama("ollama_base", "stories"),
		newOllama("ollama_tuned", "stories-tuned"),
		newOllama("missing", "no-such-model"),
	}
	cases := qaCases(t, model)
	start := time.Now()
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "exact", Kind: ExactMatch}}}, cs,
		RunOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run in %v", time.Since(start).Round(time.Millisecond))
	for _, c := range res.Contestants {
		t.Logf("%-13s %-7s exact %.2f  tokens %d/%d  p50 %.0f ms  %s", c.Name, c.Status, c.Scores["exact"].Value, c.Usage.PromptTokens, c.Usage.CompletionTokens, c.LatencyP50MS, c.Error)
	}
	ob, ot := res.Contestant("ollama_base"), res.Contestant("ollama_tuned")
	if ob.Status != "ok" || ot.Status != "ok" || ob.Answered != len(cases) || ot.Answered != len(cases) {
		t.Fatalf("ollama contestants: %s %q, %s %q", ob.Status, ob.Error, ot.Status, ot.Error)
	}
	if ot.Scores["exact"].Value < 0.85 || ob.Scores["exact"].Value > 0.05 {
		t.Errorf("exact match served by Ollama: tuned %.2f, base %.2f", ot.Scores["exact"].Value, ob.Scores["exact"].Value)
	}
	if ot.Usage.CompletionTokens == 0 || ot.Usage.PromptTokens == 0 || ot.LatencyP50MS <= 0 {
		t.Errorf("ollama_tuned usage %+v, latency %v", ot.Usage, ot.LatencyP50MS)
	}
	same := map[string]int{}
	for _, c := range res.Cases {
		if c.Answers[0].Text == c.Answers[2].Text {
			same["base"]++
		}
		if c.Answers[1].Text == c.Answers[3].Text {
			same["tuned"]++
		} else {
			t.Logf("tuned answers differ: in-process %q, Ollama %q", c.Answers[1].Text, c.Answers[3].Text)
		}
	}
	t.Logf("answers identical to the in-process model: base %d/20, tuned %d/20", same["base"], same["tuned"])
	if same["tuned"] < 18 || same["base"] < 15 {
		t.Errorf("the same model served by Ollama answers differently: %v of 20 agree", same)
	}
	m := res.Contestant("missing")
	if m.Status != "failed" || !strings.Contains(m.Error, `no model "no-such-model"`) || !strings.Contains(m.Error, "stories") {
		t.Errorf("missing model: %s %q", m.Status, m.Error)
	}
	if c := res.Compare("ollama_tuned", "base", "exact"); c == nil || !c.Significant() {
		t.Errorf("ollama_tuned vs base: %+v", c)
	}
}
