package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/shared"
)

// flipTensorByte flips one byte inside the tensor data of a GGUF file.
func flipTensorByte(t *testing.T, path string) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors[len(f.Tensors)-1]
	off := f.DataOffset + int64(last.Offset) + int64(last.Size())/2
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editRecord rewrites a run's run.json through edit.
func editRecord(t *testing.T, run string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(run, "run.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptAdapterAndCheckpoint: an adapter and a checkpoint carry the
// digest of their tensor data; one flipped byte inside it is one line
// naming the file in generate, eval, export merge, export peft, publish
// and resume; the resume error's hint works (without the checkpoint the run
// trains again from step 0).
func TestCorruptAdapterAndCheckpoint(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "eval:\n  generation: {max_tokens: 2}\n")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=3"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	adapter := filepath.Join(run, "adapter.gguf")
	f, err := gguf.Open(adapter)
	if err != nil {
		t.Fatal(err)
	}
	digest, ok := f.String(gguf.TensorDataKey)
	info, _ := os.ReadFile(filepath.Join(run, "adapter.json"))
	if !ok || len(digest) != 64 || !strings.Contains(string(info), `"tensor_data_sha256": "`+digest+`"`) {
		t.Fatalf("the adapter's digest %q is not in its metadata and adapter.json:\n%s", digest, info)
	}
	if r := cli(t, "generate", "--model", model, "--adapter", adapter, "--prompt", "Q:", "--max-tokens", "2", "--threads", "1"); r.code != 0 {
		t.Fatalf("generate with the good adapter: %s", r.stderr)
	}
	flipTensorByte(t, adapter)
	corrupt := "tensor data does not match its digest (the file is corrupt)"
	for _, args := range [][]string{
		{"generate", "--model", model, "--adapter", adapter, "--prompt", "Q:", "--max-tokens", "2", "--threads", "1"},
		{"eval", run},
		{"export", "merge", run, "--out", filepath.Join(t.TempDir(), "m.gguf"), "--type", "f32"},
		{"export", "peft", run, "--out", filepath.Join(t.TempDir(), "peft")},
		{"publish", run, "--ollama", "qa-bot", "--modelfile-only", "--as", "adapter", "--host", "http://127.0.0.1:1"},
	} {
		wantCleanError(t, cli(t, args...), adapter+": "+corrupt)
	}

	// The checkpoint: resuming from a corrupt one says so, and what works.
	ckpt := filepath.Join(run, "checkpoint.gguf")
	if f, err := gguf.Open(ckpt); err != nil {
		t.Fatal(err)
	} else if _, ok := f.String(gguf.TensorDataKey); !ok {
		t.Fatal("the checkpoint records no digest")
	}
	flipTensorByte(t, ckpt)
	editRecord(t, run, func(m map[string]any) { m["state"] = "interrupted" })
	r := cli(t, "train", "--resume", run)
	wantCleanError(t, r, ckpt+": "+corrupt, "delete "+ckpt, "--resume "+run)
	if strings.Contains(r.stderr, "keeps its last checkpoint") {
		t.Fatalf("the hint sends the user back to the corrupt checkpoint: %s", r.stderr)
	}
	os.Remove(ckpt)
	if r := cli(t, "train", "--resume", run); r.code != 0 || !strings.Contains(r.stderr, "starts again from step 0") {
		t.Fatalf("resume without a checkpoint: exit %d: %s", r.code, r.stderr)
	}
	if r := cli(t, "generate", "--model", model, "--adapter", adapter, "--prompt", "Q:", "--max-tokens", "2", "--threads", "1"); r.code != 0 {
		t.Fatalf("generate with the retrained adapter: %s", r.stderr)
	}
}

// TestResumeChecksTheData: a resume after rows were appended to the
// training file is refused naming it; --accept-changed-data goes on and
// run.json records it; a run.json without digests resumes as before.
func TestResumeChecksTheData(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=3"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	b, _ := os.ReadFile(filepath.Join(run, "run.json"))
	if !strings.Contains(string(b), `"sha256"`) || !strings.Contains(string(b), "train.jsonl") || !strings.Contains(string(b), `"seq_len": 64`) {
		t.Fatalf("run.json records no data digests:\n%s", b)
	}
	train := filepath.Join(filepath.Dir(recipe), "train.jsonl")
	fh, _ := os.OpenFile(train, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"prompt": "Q: What is 2 and 2?\nA:", "completion": " Four."}` + "\n")
	fh.Close()
	editRecord(t, run, func(m map[string]any) { m["state"] = "interrupted" })
	r := cli(t, "train", "--resume", run)
	wantCleanError(t, r, train+" (train) changed", "--accept-changed-data")
	if r := cli(t, "train", "--resume", run, "--accept-changed-data"); r.code != 0 {
		t.Fatalf("resume --accept-changed-data: %s", r.stderr)
	}
	b, _ = os.ReadFile(filepath.Join(run, "run.json"))
	if !strings.Contains(string(b), `"data_changes"`) || !strings.Contains(string(b), "train.jsonl (train) changed") {
		t.Fatalf("run.json does not record the accepted change:\n%s", b)
	}
	// An older run.json, without digests.
	editRecord(t, run, func(m map[string]any) { m["state"] = "interrupted"; delete(m, "data"); delete(m, "data_changes") })
	fh, _ = os.OpenFile(train, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"prompt": "Q: What is 3 and 3?\nA:", "completion": " Six."}` + "\n")
	fh.Close()
	if r := cli(t, "train", "--resume", run); r.code != 0 || !strings.Contains(r.stderr, "records no data digests") {
		t.Fatalf("resuming an older run: exit %d: %s", r.code, r.stderr)
	}
}

// TestHintsThatWork: wrong generate arguments are usage errors; eval of a
// finished run whose adapter is gone, and resuming it, say what works.
func TestHintsThatWork(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	for _, args := range [][]string{{"--max-tokens", "-1"}, {"--ctx", "-5"}} {
		r := cli(t, append([]string{"generate", "--model", model, "--prompt", "Once"}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, args[0]) {
			t.Fatalf("generate %v: exit %d, %q", args, r.code, r.stderr)
		}
	}
	recipe := qaRecipe(t, model, "")
	run := filepath.Join(t.TempDir(), "run")
	if r := cli(t, "train", recipe, "--out", run, "--set", "train.max_steps=2"); r.code != 0 {
		t.Fatalf("train: %s", r.stderr)
	}
	os.Remove(filepath.Join(run, "adapter.gguf"))
	for _, args := range [][]string{{"eval", run}, {"train", "--resume", run}} {
		r := cli(t, args...)
		wantCleanError(t, r, "finetune train "+filepath.Join(run, "recipe.yaml"))
		if strings.Contains(r.stderr, "resume it") {
			t.Fatalf("%v advises --resume on a finished run: %s", args, r.stderr)
		}
	}
}
