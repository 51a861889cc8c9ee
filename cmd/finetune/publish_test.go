package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/runs"
)

// TestTrainPublishes: a recipe with a publish section is published to a
// real Ollama server after training (Modelfile and publish.json in the run
// folder, the model on the server, smoke-tested on the first eval case);
// `finetune publish` publishes the run again under another name without
// uploading anything; a failed publish is one line and changes nothing.
func TestTrainPublishes(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	recipe := qaRecipe(t, model, fmt.Sprintf("publish:\n  ollama: qa-tuned\n  host: %s\n", srv.URL))
	out := filepath.Join(t.TempDir(), "run")
	r := cli(t, "train", recipe, "--out", out)
	if r.code != 0 || strings.TrimSpace(r.stdout) != out {
		t.Fatalf("train (%d) printed %q:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "published qa-tuned to "+srv.URL.String()) || !strings.Contains(r.stderr, `asked      "Q: Which planet is red?\nA:"`) {
		t.Errorf("train's publish output:\n%s", r.stderr)
	}
	var res publish.Result
	b, err := os.ReadFile(filepath.Join(out, "publish.json"))
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("publish.json: %v %s", err, b)
	}
	if res.Model != "qa-tuned" || len(res.Uploaded) != 2 || res.Template != "plain" || res.Smoke.Served == "" || res.Smoke.Local == "" {
		t.Errorf("publish.json: %+v", res)
	}
	mf, _ := os.ReadFile(filepath.Join(out, "Modelfile"))
	// Without a server, --modelfile-only writes the same Modelfile.
	os.Remove(filepath.Join(out, "Modelfile"))
	r = cli(t, "publish", out, "--modelfile-only", "--host", "http://127.0.0.1:1")
	if again, _ := os.ReadFile(filepath.Join(out, "Modelfile")); r.code != 0 || string(again) != string(mf) || !strings.Contains(r.stdout, "ollama create qa-tuned -f") {
		t.Errorf("--modelfile-only (%d): %s%s\n%s\nwant\n%s", r.code, r.stdout, r.stderr, again, mf)
	}
	if !strings.Contains(string(mf), "FROM "+model) || !strings.Contains(string(mf), "ADAPTER ./adapter.gguf") || !strings.Contains(string(mf), "TEMPLATE {{ .Prompt }}") {
		t.Errorf("Modelfile:\n%s", mf)
	}

	before := snapshotDir(t, out)
	r = cli(t, "publish", out, "--ollama", "qa-again", "--host", srv.URL.String())
	if r.code != 0 || strings.Count(r.stdout, "(already on the server)") != 2 || !strings.Contains(r.stdout, "in-process ") || !strings.Contains(r.stdout, "run it: ollama run qa-again") {
		t.Fatalf("publish again (%d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// A lone adapter file with its base.
	r = cli(t, "publish", filepath.Join(out, "adapter.gguf"), "--base", model, "--ollama", "qa-file", "--host", srv.URL.String())
	wantCleanError(t, r, "the base model has no chat template", "--chat-template none")
	r = cli(t, "publish", filepath.Join(out, "adapter.gguf"), "--base", model, "--ollama", "qa-file", "--host", srv.URL.String(), "--chat-template", "none")
	if r.code != 0 || !strings.Contains(r.stdout, "published qa-file") || strings.Contains(r.stdout, "Modelfile") {
		t.Fatalf("publish an adapter file (%d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = cli(t, "publish", filepath.Join(out, "adapter.gguf"), "--ollama", "qa-file")
	if r.code != 2 || !strings.Contains(r.stderr, "--base is required with an adapter file") {
		t.Errorf("adapter file without --base (%d): %s", r.code, r.stderr)
	}
	before = snapshotDir(t, out) // publish.json and the Modelfile were rewritten
	r = cli(t, "publish", out, "--ollama", "qa-nowhere", "--host", "http://127.0.0.1:1")
	wantCleanError(t, r, "cannot reach the Ollama server at http://127.0.0.1:1", "start it with `ollama serve`, or give --host")
	r = cli(t, "publish", out, "--ollama", "qa-other", "--host", srv.URL.String(), "--base", filepath.Join(filepath.Dir(model), "..", "models", "stories260K.gguf.missing"))
	wantCleanError(t, r, "stories260K.gguf.missing")
	if after := snapshotDir(t, out); after != before {
		t.Errorf("failed publishes changed the run folder:\n%s\nwas\n%s", after, before)
	}
	l, err := srv.Client.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range l.Models {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "qa-again:latest qa-file:latest qa-tuned:latest" {
		t.Errorf("models on the server: %v", names)
	}
}

// TestPublishMergedRun: `finetune publish RUN --as merged` folds the
// adapter into the base, checks it in-process, keeps it in the run folder
// as model.gguf with a Modelfile FROM it, and a second publish uploads
// nothing; a bad --as is a usage error.
func TestPublishMergedRun(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	recipe := qaRecipe(t, model, "")
	out := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", out, "--set", "train.max_steps=30"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	if r := cli(t, "publish", out, "--ollama", "qa-merged", "--as", "lora"); r.code != 2 || !strings.Contains(r.stderr, "use adapter, merged or auto") {
		t.Fatalf("--as lora (%d): %s", r.code, r.stderr)
	}
	r := cli(t, "publish", out, "--ollama", "qa-merged", "--host", srv.URL.String(), "--as", "merged")
	if r.code != 0 || !strings.Contains(r.stdout, "merged     sha256:") || !strings.Contains(r.stdout, ", f32 (uploaded)") ||
		!strings.Contains(r.stdout, "merge      answers as the base with the adapter") || !strings.Contains(r.stdout, "check      identical answers") || strings.Contains(r.stdout, "adapter    ") {
		t.Fatalf("publish --as merged (%d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	mf, _ := os.ReadFile(filepath.Join(out, runs.ModelfileName))
	if !strings.Contains(string(mf), "FROM ./model.gguf") || strings.Contains(string(mf), "ADAPTER") {
		t.Errorf("Modelfile:\n%s", mf)
	}
	var res publish.Result
	b, _ := os.ReadFile(filepath.Join(out, runs.PublishFile))
	if json.Unmarshal(b, &res) != nil || res.As != "merged" || res.MergeCheck == nil || !res.MergeCheck.Identical {
		t.Errorf("publish.json: %s", b)
	}
	if _, err := os.Stat(filepath.Join(out, runs.MergedFile)); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "publish", out, "--ollama", "qa-merged", "--host", srv.URL.String(), "--as", "merged")
	if r.code != 0 || !strings.Contains(r.stdout, ", f32 (already on the server)") {
		t.Fatalf("publish --as merged again (%d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, e := range must(os.ReadDir(out)) {
		if strings.HasPrefix(e.Name(), ".publish") || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left in the run folder: %s", e.Name())
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() == runs.LockFile {
			continue // says who holds the folder while one does; empty after
		}
		fi, _ := e.Info()
		out = append(out, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	return strings.Join(out, "\n")
}

// TestTrainPublishesFromOllama: a recipe whose base is a model pulled into
// Ollama trains on that model's GGUF and publishes FROM it: only the
// adapter is uploaded, and the Modelfile names the Ollama model.
func TestTrainPublishesFromOllama(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	srv.Create(t, "stories", model, "")
	t.Setenv("OLLAMA_HOST", srv.URL.Host)
	recipe := qaRecipe(t, "ollama:stories", "publish:\n  ollama: stories-qa\n")
	out := filepath.Join(t.TempDir(), "run")
	r := cli(t, "train", recipe, "--out", out)
	if r.code != 0 {
		t.Fatalf("train (%d):\n%s", r.code, r.stderr)
	}
	var res publish.Result
	b, err := os.ReadFile(filepath.Join(out, "publish.json"))
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("publish.json: %v %s\n%s", err, b, r.stderr)
	}
	if res.From != "stories" || len(res.Uploaded) != 1 || res.Uploaded[0] != res.Adapter || res.Template != "plain" {
		t.Errorf("publish from Ollama: %+v", res)
	}
	mf, _ := os.ReadFile(filepath.Join(out, "Modelfile"))
	if !strings.Contains(string(mf), "\nFROM stories\n") {
		t.Errorf("Modelfile:\n%s", mf)
	}
	if !strings.Contains(r.stderr, "base       Ollama model stories") {
		t.Errorf("train's publish output:\n%s", r.stderr)
	}
}
