package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/shared"
)

// qaRecipe writes a small prompt/completion data set and a recipe that
// tunes stories260K on it.
func qaRecipe(t *testing.T, model string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	qa := [][2]string{
		{"What is the capital of Peru?", "Lima."}, {"What is 7 times 8?", "56."}, {"Which gas do plants absorb?", "Carbon dioxide."},
		{"Who wrote Hamlet?", "Shakespeare."}, {"What is the largest planet?", "Jupiter."}, {"What is the symbol for gold?", "Au."},
		{"How many legs does a spider have?", "Eight."}, {"What is the capital of Japan?", "Tokyo."}, {"How many continents are there?", "Seven."},
		{"Which planet is red?", "Mars."}, {"Who painted the Mona Lisa?", "Leonardo."}, {"What is the smallest prime?", "Two."},
	}
	var train, eval strings.Builder
	for i, p := range qa {
		line, _ := json.Marshal(map[string]string{"prompt": "Q: " + p[0] + "\nA:", "completion": " " + p[1]})
		if i < 9 {
			train.Write(append(line, '\n'))
		} else {
			eval.Write(append(line, '\n'))
		}
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(train.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(eval.String()), 0o644)
	recipe := fmt.Sprintf(`name: qa
base: %s
data:
  train: train.jsonl
  eval: eval.jsonl
  template: none
  seq_len: 64
lora:
  rank: 4
train:
  max_steps: 12
  learning_rate: 1e-2
  checkpoint_every: 3
  eval_every: 4
  threads: 1
%s`, model, extra)
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(recipe), 0o644)
	return p
}

func TestTrainRunFolder(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	out := filepath.Join(t.TempDir(), "run")
	r := cli(t, "train", recipe, "--out", out)
	if r.code != 0 {
		t.Fatalf("train failed (%d):\n%s", r.code, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != out {
		t.Fatalf("train printed %q, want the run folder %q", r.stdout, out)
	}
	for _, f := range []string{"recipe.yaml", "data-report.json", "metrics.jsonl", "checkpoint.gguf", "adapter.gguf", "adapter.json", "train.log", "base.txt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("run folder lacks %s", f)
		}
	}
	b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if n := strings.Count(string(b), "\n"); n != 12 {
		t.Fatalf("metrics.jsonl has %d lines, want 12", n)
	}
	resolved, _ := os.ReadFile(filepath.Join(out, "recipe.yaml"))
	if !strings.Contains(string(resolved), "schedule: cosine") {
		t.Fatalf("recipe.yaml is not resolved:\n%s", resolved)
	}
	log, _ := os.ReadFile(filepath.Join(out, "train.log"))
	if !strings.Contains(string(log), "step 12/12") || !strings.Contains(string(log), "data") {
		t.Fatalf("train.log:\n%s", log)
	}
	// llama.cpp loads the adapter.
	g := cli(t, "generate", "--model", model, "--adapter", filepath.Join(out, "adapter.gguf"), "--prompt", "Q: Who wrote Hamlet?\nA:", "--max-tokens", "4", "--threads", "1")
	if g.code != 0 {
		t.Fatalf("generate with the trained adapter: %s", g.stderr)
	}
}

func TestTrainRefusesBadInputBeforeWork(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	out := filepath.Join(t.TempDir(), "run")
	src, _ := os.ReadFile(recipe)
	for _, c := range []struct{ name, edit, want string }{
		{"missing base", strings.Replace(string(src), model, "missing.gguf", 1), "missing.gguf: no such file"},
		{"typo", strings.Replace(string(src), "learning_rate", "learning_rat", 1), `recipe.yaml:12: train: unknown key "learning_rat" (did you mean "learning_rate"?)`},
		{"bad data", string(src), "train.jsonl:2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(recipe, []byte(c.edit), 0o644)
			if c.name == "bad data" {
				data := filepath.Join(filepath.Dir(recipe), "train.jsonl")
				b, _ := os.ReadFile(data)
				lines := strings.SplitN(string(b), "\n", 3)
				os.WriteFile(data, []byte(lines[0]+"\n{\"prompt\": \"unclosed\n"+lines[2]), 0o644)
			}
			r := cli(t, "train", recipe, "--out", out)
			wantCleanError(t, r, c.want)
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a run folder was made for a run that could not start")
			}
		})
	}
}

// TestInterruptAndResume stops a run with Ctrl-C (SIGINT), which exits with
// code 130, and resumes it: the adapter equals the one of an uninterrupted
// run.
func TestInterruptAndResume(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	full := filepath.Join(t.TempDir(), "full")
	if r := cli(t, "train", recipe, "--out", full, "--set", "train.max_steps=40"); r.code != 0 {
		t.Fatalf("uninterrupted run: %s", r.stderr)
	}
	cut := filepath.Join(t.TempDir(), "cut")
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "train", recipe, "--out", cut, "--set", "train.max_steps=40")
	cmd.Env = append(os.Environ(), "FINETUNE_AS_CLI=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(filepath.Join(cut, "metrics.jsonl"))
		if strings.Count(string(b), "\n") >= 7 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the run never reached step 7:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	// Stopped before it finished: exit code 130, the run folder printed.
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != exitInterrupted {
		t.Fatalf("the interrupted run exited with %v, want exit code %d:\n%s", err, exitInterrupted, stderr.String())
	}
	if strings.TrimSpace(stdout.String()) != cut {
		t.Fatalf("the interrupted run printed %q, want its run folder %q", stdout.String(), cut)
	}
	if !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "--resume") {
		t.Fatalf("no resume hint after Ctrl-C:\n%s", stderr.String())
	}
	b, _ := os.ReadFile(filepath.Join(cut, "metrics.jsonl"))
	if n := strings.Count(string(b), "\n"); n >= 40 {
		t.Fatalf("the run finished (%d steps) before Ctrl-C arrived", n)
	}
	if r := cli(t, "train", recipe, "--out", cut, "--resume", "--set", "train.max_steps=40"); r.code != 0 {
		t.Fatalf("resume: %s", r.stderr)
	}
	a, err := adapters.Read(filepath.Join(full, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := adapters.Read(filepath.Join(cut, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range a.Pairs {
		for j := range a.Pairs[i].B {
			worst = math.Max(worst, math.Abs(float64(a.Pairs[i].B[j]-c.Pairs[i].B[j])))
		}
		for j := range a.Pairs[i].A {
			worst = math.Max(worst, math.Abs(float64(a.Pairs[i].A[j]-c.Pairs[i].A[j])))
		}
	}
	if worst > 1e-6 {
		t.Fatalf("resumed adapter differs by %g", worst)
	}
}

// TestShippedRecipesTrain trains each shipped recipe for a few steps on
// stories260K (with llama.cpp's llama2 template, since stories260K has
// none) and loads the adapter in llama.cpp.
func TestShippedRecipesTrain(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	for _, name := range []string{"customer-support", "legal"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			r := cli(t, "train", filepath.Join("..", "..", "recipes", name+".yaml"), "--out", out,
				"--set", "base="+model, "--set", "data.template=llama2", "--set", "data.seq_len=512",
				"--set", "train.max_steps=2", "--set", "train.warmup_steps=0", "--set", "train.eval_every=0", "--set", "train.threads=1")
			if r.code != 0 {
				t.Fatalf("train %s: %s", name, r.stderr)
			}
			g := cli(t, "generate", "--model", model, "--adapter", filepath.Join(out, "adapter.gguf"), "--prompt", "Hello", "--max-tokens", "4", "--threads", "1")
			if g.code != 0 {
				t.Fatalf("llama.cpp did not load the adapter: %s", g.stderr)
			}
			rep, _ := os.ReadFile(filepath.Join(out, "data-report.json"))
			if !strings.Contains(string(rep), `"records": 400`) {
				t.Fatalf("data report does not count the 400 training records:\n%.400s", rep)
			}
		})
	}
}
