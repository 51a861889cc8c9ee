package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	for _, f := range []string{"recipe.yaml", "data-report.json", "metrics.jsonl", "checkpoint.gguf", "adapter.gguf", "adapter.json", "train.log", "run.json"} {
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
	// train.log has every line, as key=value pairs, the ones from before
	// the folder existed included.
	log, _ := os.ReadFile(filepath.Join(out, "train.log"))
	for _, want := range []string{"msg=\"base model\" path=" + model, "msg=data train_examples=", " eval_examples=", "msg=step step=12 of=12 loss=", "msg=trained state=finished steps=12"} {
		if !strings.Contains(string(log), want) {
			t.Fatalf("train.log lacks %q:\n%s", want, log)
		}
	}
	// Validation ran at steps 4, 8 and 12, once each; the run's wall time
	// holds it.
	info, err := adapters.ReadInfo(filepath.Join(out, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if tr := info.Training; tr.ValPasses != 3 || tr.ValSeconds <= 0 || tr.StepsSeconds <= 0 || tr.WallSeconds < tr.StepsSeconds+tr.ValSeconds {
		t.Fatalf("adapter.json: %d validation passes in %g s, steps %g s, wall %g s; want 3 passes, and a wall time that holds steps and validation", tr.ValPasses, tr.ValSeconds, tr.StepsSeconds, tr.WallSeconds)
	}
	// The eval split fills fewer windows than the 32 a pass samples: every
	// one is read.
	tr := info.Training
	if tr.ValWindows < 1 || tr.ValWindows != tr.ValWindowsTotal {
		t.Fatalf("adapter.json: validation on %d of %d windows, want all of them", tr.ValWindows, tr.ValWindowsTotal)
	}
	for _, want := range []string{fmt.Sprintf(`msg="validation on all %d windows"`, tr.ValWindows), " wall=", " steps_time=", " validation_time=", " val_passes=3"} {
		if !strings.Contains(string(log), want) {
			t.Fatalf("train.log lacks %q:\n%s", want, log)
		}
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
	// The resume command printed after Ctrl-C works as printed: the run
	// keeps the --set it was started with.
	_, hint, ok := strings.Cut(stderr.String(), "resume=\"")
	hint, _, _ = strings.Cut(hint, "\"")
	args := strings.Fields(hint)
	if !ok || len(args) < 3 || args[0] != "finetune" {
		t.Fatalf("no resume command after Ctrl-C:\n%s", stderr.String())
	}
	if r := cli(t, args[1:]...); r.code != 0 {
		t.Fatalf("%s: %s", hint, r.stderr)
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

	// A finished run says so, and its adapter.json keeps its figures.
	info, _ := os.ReadFile(filepath.Join(cut, "adapter.json"))
	r := cli(t, "train", "--resume", cut)
	wantCleanError(t, r, cut, "finished", "nothing to resume")
	if after, _ := os.ReadFile(filepath.Join(cut, "adapter.json")); !bytes.Equal(after, info) {
		t.Fatalf("resuming a finished run rewrote adapter.json:\n%s\n%s", info, after)
	}
}

// TestRunFoldersAreExclusive: two runs of one recipe started at once get
// a folder each; --out of an existing run is refused, leaving it as it was.
func TestRunFoldersAreExclusive(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	work := t.TempDir()
	exe, _ := os.Executable()
	ranks := []string{"4", "8"}
	cmds := make([]*exec.Cmd, len(ranks))
	outs := make([]bytes.Buffer, len(ranks))
	for i, rank := range ranks {
		cmds[i] = exec.Command(exe, "train", recipe, "--set", "lora.rank="+rank, "--set", "train.max_steps=3")
		cmds[i].Dir, cmds[i].Env, cmds[i].Stdout = work, append(os.Environ(), "FINETUNE_AS_CLI=1"), &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	dirs := map[string]bool{}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("train %d: %v", i, err)
		}
		dir := filepath.Join(work, strings.TrimSpace(outs[i].String()))
		dirs[dir] = true
		y, _ := os.ReadFile(filepath.Join(dir, "recipe.yaml"))
		a, err := adapters.Read(filepath.Join(dir, "adapter.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(y), "rank: "+ranks[i]+"\n") || a.Pairs[0].Rank != atoi(ranks[i]) {
			t.Fatalf("%s: recipe.yaml and adapter.gguf (rank %d) disagree with the run's rank %s", dir, a.Pairs[0].Rank, ranks[i])
		}
	}
	if len(dirs) != 2 {
		t.Fatalf("two runs shared a folder: %v", dirs)
	}
	for dir := range dirs {
		before, _ := os.ReadFile(filepath.Join(dir, "adapter.gguf"))
		r := cli(t, "train", recipe, "--out", dir)
		wantCleanError(t, r, "already holds a run", "--resume")
		if after, _ := os.ReadFile(filepath.Join(dir, "adapter.gguf")); !bytes.Equal(before, after) {
			t.Fatal("train --out of a finished run changed its adapter")
		}
		break
	}
}

// TestRunFolderPathsAreAbsolute: a run trained from a relative recipe path
// with a relative base is exported from another working directory.
func TestRunFolderPathsAreAbsolute(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	dir := filepath.Dir(recipe)
	src, _ := os.ReadFile(recipe)
	b, _ := os.ReadFile(model)
	os.WriteFile(filepath.Join(dir, "base.gguf"), b, 0o644)
	os.WriteFile(recipe, []byte(strings.Replace(string(src), model, "base.gguf", 1)), 0o644)
	exe, _ := os.Executable()
	train := exec.Command(exe, "train", filepath.Join(filepath.Base(dir), "recipe.yaml"), "--out", "run", "--set", "train.max_steps=2")
	train.Dir, train.Env = filepath.Dir(dir), append(os.Environ(), "FINETUNE_AS_CLI=1")
	if out, err := train.CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	run := filepath.Join(filepath.Dir(dir), "run")
	merged := filepath.Join(t.TempDir(), "merged.gguf")
	if r := cli(t, "export", "merge", run, "--out", merged); r.code != 0 {
		t.Fatalf("export merge from another folder: %s", r.stderr)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
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
