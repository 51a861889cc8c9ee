package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestServeCommand: `finetune serve` on SmolLM2 with a named adapter
// listens on loopback, wants the key from its environment, and on Ctrl-C
// finishes the stream in flight before it exits cleanly.
func TestServeCommand(t *testing.T) {
	base := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	adapter := filepath.Join(t.TempDir(), "zero.gguf")
	writeAdapter(t, adapter, "llama", map[string][2]uint64{"blk.0.attn_q.weight": {576, 576}}, 4)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "serve", "--model", base, "tuned="+adapter, "--port", "0", "--threads", "1", "--ctx", "256")
	cmd.Env = append(os.Environ(), "FINETUNE_AS_CLI=1", "FINETUNE_SERVE_API_KEY=sk-cmd-test")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var log bytes.Buffer
	sc := bufio.NewScanner(stderr)
	addr := ""
	serving := regexp.MustCompile(`serving 2 models at (http://127\.0\.0\.1:\d+/v1) \(key from \$FINETUNE_SERVE_API_KEY\)`)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := serving.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatalf("no \"serving\" line:\n%s", log.String())
	}
	rest := make(chan string)
	go func() {
		b, _ := io.ReadAll(stderr)
		rest <- string(b)
	}()

	ask := func(key, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, addr+"/chat/completions", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	body := `{"model": "tuned", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "Tell me about the sea."}]}`
	if resp := ask("", body); resp.StatusCode != 401 {
		t.Fatalf("without the key: %d, want 401", resp.StatusCode)
	}
	resp := ask("sk-cmd-test", body)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	// Ctrl-C once the first words have come: the stream still ends whole.
	events := bufio.NewScanner(resp.Body)
	var text strings.Builder
	interrupted, done, finish := false, false, ""
	for events.Scan() {
		line := events.Text()
		text.WriteString(line + "\n")
		if !interrupted && strings.Contains(line, `"content"`) {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			interrupted = true
		}
		if m := regexp.MustCompile(`"finish_reason":"(\w+)"`).FindStringSubmatch(line); m != nil {
			finish = m[1]
		}
		if line == "data: [DONE]" {
			done = true
		}
	}
	if !interrupted || !done || finish == "" {
		t.Fatalf("the stream in flight at Ctrl-C did not end whole (interrupted %v, [DONE] %v, finish %q):\n%s", interrupted, done, finish, text.String())
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() || ee.ExitCode() != 0 {
				t.Fatalf("exit %v after Ctrl-C:\n%s%s", err, log.String(), <-rest)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60s after Ctrl-C:\n%s", log.String())
	}
	if out := <-rest; !strings.Contains(out, "draining") || !strings.Contains(out, "stopped") {
		t.Fatalf("no draining and stopped lines:\n%s%s", log.String(), out)
	}
}

func TestServeUsage(t *testing.T) {
	wantCleanError(t, cli(t, "serve"), "--model")
	wantCleanError(t, cli(t, "serve", "--model", "x.gguf", "no/such/run"), "no/such/run")
	wantCleanError(t, cli(t, "serve", "--model", "x.gguf", "not-published-anywhere", "--runs", t.TempDir()), "not-published-anywhere", "published")
}
