package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestModelGivenAsRecipe: a model where the recipe goes says so and where
// the model belongs, for every command that takes a recipe.
func TestModelGivenAsRecipe(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	for _, args := range [][]string{{"train", model}, {"eval", model}, {"recipe", "validate", model}, {"recipe", "show", model}} {
		r := cli(t, args...)
		wantCleanError(t, r, model+" is a GGUF model file, not a recipe", "`base:`")
		if r.code != exitFailure {
			t.Fatalf("%v: exit %d, want %d", args, r.code, exitFailure)
		}
	}
}

// TestAdapterGivenAsBase: a LoRA adapter where the base model goes (a
// recipe's base:, --model) is one line that names it as an adapter, not
// "missing llama.context_length".
func TestAdapterGivenAsBase(t *testing.T) {
	shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	adapter := filepath.Join(dir, "adapter.gguf")
	writeAdapter(t, adapter, "llama", map[string][2]uint64{"blk.0.attn_q.weight": {64, 64}}, 4)
	recipe := qaRecipe(t, adapter, "")
	data := filepath.Join(filepath.Dir(recipe), "train.jsonl")
	for _, args := range [][]string{
		{"train", recipe, "--out", filepath.Join(dir, "run")},
		{"generate", "--model", adapter, "--prompt", "Once"},
		{"data", "inspect", data, "--model", adapter},
	} {
		t.Run(args[0], func(t *testing.T) {
			wantCleanError(t, cli(t, args...), adapter+" is a LoRA adapter, not a base model", "base:", "--adapter")
		})
	}
}

// TestPlainTextWithoutTemplate: a plain-text data set on a base without a
// chat template inspects and trains with no template named; a chat data
// set on it still has to name one.
func TestPlainTextWithoutTemplate(t *testing.T) {
	model := shared.Path(t, "models/llama-2-tiny-random.gguf")
	dir := t.TempDir()
	var train strings.Builder
	for _, s := range []string{"Once upon a time there was a cat.", "The dog ran to the park.", "A bird sang in the tree.", "The sun was warm."} {
		line, _ := json.Marshal(map[string]string{"text": s})
		train.Write(append(line, '\n'))
	}
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(train.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "eval.jsonl"), []byte(`{"text": "The cat sat on the mat."}`+"\n"), 0o644)
	chat := filepath.Join(dir, "chat.jsonl")
	os.WriteFile(chat, []byte(`{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}`+"\n"), 0o644)
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(fmt.Sprintf("name: text\nbase: %s\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\n  format: text\n  seq_len: 64\nlora:\n  rank: 2\ntrain:\n  max_steps: 2\n  eval_every: 0\n  threads: 1\n", model)), 0o644)

	r := cli(t, "data", "inspect", filepath.Join(dir, "train.jsonl"), "--model", model)
	if r.code != 0 || !strings.Contains(r.stdout, "<s>« Once upon a time there was a cat.</s>»") {
		t.Fatalf("data inspect of plain text: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "run")
	if r := cli(t, "train", recipe, "--out", out); r.code != 0 {
		t.Fatalf("train on plain text: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "adapter.gguf")); err != nil {
		t.Fatal("no adapter after training on plain text")
	}
	wantCleanError(t, cli(t, "data", "inspect", chat, "--model", model), model, "no chat template", `"none"`)
	wantCleanError(t, cli(t, "train", recipe, "--out", filepath.Join(dir, "run2"), "--set", "data.train=chat.jsonl", "--set", "data.format="), model, "no chat template")
}
