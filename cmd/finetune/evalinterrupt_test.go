package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestEvalInterruptWhileDecoding: Ctrl-C while a local contestant decodes
// ends the eval with exit code 130 and the one line that says how to
// resume, as the exit codes document.
func TestEvalInterruptWhileDecoding(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "eval:\n  contestants: [{name: base}]\n  metrics: [{name: exact_match}]\n  generation: {max_tokens: 400}\n")
	var eval strings.Builder
	for i := range 300 {
		line, _ := json.Marshal(map[string]string{"prompt": "Q: Tell me story number " + strings.Repeat("very ", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "\nA:", "completion": " Once."})
		eval.Write(append(line, '\n'))
	}
	os.WriteFile(filepath.Join(filepath.Dir(recipe), "eval.jsonl"), []byte(eval.String()), 0o644)
	out := filepath.Join(t.TempDir(), "eval")
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "eval", recipe, "--out", out)
	cmd.Env = append(os.Environ(), "FINETUNE_AS_CLI=1")
	var stderr syncWriter
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "done=") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress within a minute:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("the interrupted eval exited %d, want %d:\n%s", code, exitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted: ") || !strings.Contains(stderr.String(), "to resume, run: finetune eval") {
		t.Fatalf("no resume line:\n%s", stderr.String())
	}
}
