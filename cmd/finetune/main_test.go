package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// The test binary doubles as the finetune binary: with FINETUNE_AS_CLI set
// it runs main, so tests see real exit codes, stderr and crashes.
func TestMain(m *testing.M) {
	if os.Getenv("FINETUNE_AS_CLI") == "1" {
		// Catalog entries a test adds (JSON), so that models fetch can be
		// tried against a loopback package index.
		if c := os.Getenv("FINETUNE_TEST_CATALOG"); c != "" {
			var extra []basemodel.CatalogEntry
			if err := json.Unmarshal([]byte(c), &extra); err != nil {
				panic(err)
			}
			basemodel.Catalog = append(basemodel.Catalog, extra...)
		}
		os.Args = append([]string{"finetune"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
	signal         string // set when the process died of a signal
}

func cli(t *testing.T, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "FINETUNE_AS_CLI=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.signal = ws.Signal().String()
		}
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	// The Go runtime turns a C abort or segfault into exit code 2 and a dump.
	for _, sig := range []string{"SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "GGML_ASSERT", "panic:"} {
		if r.signal == "" && strings.Contains(r.stderr, sig) {
			r.signal = sig
		}
	}
	return r
}

// wantCleanError asserts a non-zero exit without a crash and a one-line
// error on stderr that mentions each of want.
func wantCleanError(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.signal != "" {
		t.Fatalf("crashed with %s; stderr:\n%s", r.signal, r.stderr)
	}
	if r.code == 0 {
		t.Fatalf("exit code 0, want an error; stdout:\n%s", r.stdout)
	}
	// Progress lines (INFO/WARN) may come first; the error is one line.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(l, "INFO ") && !strings.HasPrefix(l, "WARN ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("error is %d lines, want one:\n%s", len(lines), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("error %q does not mention %q", r.stderr, w)
		}
	}
}

func TestGenerateStories(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	r := cli(t, "generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "20")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "Once upon a time, there was a little girl named Lily.") {
		t.Fatalf("stdout %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "generated 20 tokens") || !strings.Contains(r.stderr, "tokens/s") {
		t.Fatalf("stderr lacks the speed line: %q", r.stderr)
	}
}

func TestInspectJSON(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	r := cli(t, "inspect", model, "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{`"architecture": "llama"`, `"embedding_length": 64`, `"head_count_kv": 4`, `"size": 512`, `"chat_template": false`, `"context_length": 2048`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect --json lacks %s", want)
		}
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "notes.gguf")
	os.WriteFile(notGGUF, []byte("PK\x03\x04 this is a zip file, not a model"), 0o644)

	qwen := filepath.Join(dir, "qwen.gguf")
	if err := testmodel.Write(qwen, testmodel.Config{Layers: 1, Embd: 32, Heads: 4, KVHeads: 4, FF: 64}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(qwen)
	// Same length, so the rest of the file stays valid.
	os.WriteFile(qwen, bytes.Replace(data, []byte("llama"), []byte("qwen2"), 1), 0o644)

	missing := filepath.Join(dir, "nope.gguf")
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{"generate", "--model", missing, "--prompt", "x"}, []string{missing, "no such file"}},
		{"missing file inspect", []string{"inspect", missing}, []string{missing, "no such file"}},
		{"not gguf", []string{"generate", "--model", notGGUF, "--prompt", "x"}, []string{notGGUF, "not a GGUF file"}},
		{"folder", []string{"inspect", dir}, []string{dir, "folder"}},
		{"unsupported architecture", []string{"generate", "--model", qwen, "--prompt", "x"}, []string{qwen, "unsupported architecture", "qwen2"}},
	} {
		t.Run(c.name, func(t *testing.T) { wantCleanError(t, cli(t, c.args...), c.want...) })
	}
	r := cli(t, "generate", "--prompt", "x")
	if r.code != 2 || !strings.Contains(r.stderr, "--model is required") {
		t.Fatalf("usage error: exit %d, %q", r.code, r.stderr)
	}
}
