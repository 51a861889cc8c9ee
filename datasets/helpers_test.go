package datasets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// llama3Template is Meta's Llama-3 Instruct chat template; llama.cpp
// recognises it by its header tokens.
const llama3Template = `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`

// chatmlTemplate is a ChatML template as Qwen and others ship it.
const chatmlTemplate = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

// writeVocabModel writes a tiny Llama model whose byte vocabulary also has
// the given control tokens, with tokenizer keys set by extra (bos/eos ids
// by token text, a chat template, add_space_prefix ...).
func writeVocabModel(t testing.TB, control []string, bos, eos, template string, spacePrefix bool) string {
	t.Helper()
	kv := testmodel.ByteVocab()
	var tokens []string
	var types []int32
	for _, e := range kv {
		switch e.Key {
		case "tokenizer.ggml.tokens":
			tokens = e.Value.([]string)
		case "tokenizer.ggml.token_type":
			types = e.Value.([]int32)
		}
	}
	// A space piece, so that spaces are not spelled as the bytes of "▁".
	tokens = append(append(append([]string(nil), tokens...), "\u2581"), control...)
	types = append(append(append([]int32(nil), types...), 1), make([]int32, len(control))...)
	for i := len(types) - len(control); i < len(types); i++ {
		types[i] = 3 // control
	}
	id := func(text string) uint32 {
		for i, tok := range tokens {
			if tok == text {
				return uint32(i)
			}
		}
		t.Fatalf("no token %q", text)
		return 0
	}
	var out []gguf.KV
	for _, e := range kv {
		switch e.Key {
		case "tokenizer.ggml.tokens":
			e.Value = tokens
		case "tokenizer.ggml.token_type":
			e.Value = types
		case "tokenizer.ggml.scores":
			e.Value = make([]float32, len(tokens))
		case "tokenizer.ggml.bos_token_id":
			e.Value = id(bos)
		case "tokenizer.ggml.eos_token_id":
			e.Value = id(eos)
		}
		out = append(out, e)
	}
	out = append(out, gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: spacePrefix})
	if template != "" {
		out = append(out, gguf.KV{Key: "tokenizer.chat_template", Value: template})
	}
	dir := t.TempDir()
	vocab := filepath.Join(dir, "vocab.gguf")
	if err := gguf.Write(vocab, out, nil); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "model.gguf")
	if err := testmodel.Write(model, testmodel.Config{Layers: 1, Embd: 32, Heads: 4, KVHeads: 4, FF: 64, VocabFrom: vocab}); err != nil {
		t.Fatal(err)
	}
	return model
}

// llama3Model is a tiny model with a Llama-3 style vocabulary (header and
// end-of-turn control tokens, no SentencePiece space prefix) and Meta's
// Llama-3 chat template embedded.
func llama3Model(t testing.TB) *llama.Model {
	path := writeVocabModel(t, []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
		"<|begin_of_text|>", "<|end_of_text|>", llama3Template, false)
	return load(t, path)
}

// chatmlModel is a tiny model with ChatML control tokens, a SentencePiece
// space prefix (as Llama-2 derived ChatML models have) and a ChatML
// template embedded.
func chatmlModel(t testing.TB) *llama.Model {
	path := writeVocabModel(t, []string{"<|im_start|>", "<|im_end|>"}, "<s>", "</s>", chatmlTemplate, true)
	return load(t, path)
}

// llama2Model is the shared Llama-2 model: the real 32,000-token Llama-2
// SentencePiece vocabulary, no embedded chat template.
func llama2Model(t testing.TB) *llama.Model {
	return load(t, shared.Path(t, "models/llama-2-tiny-random.gguf"))
}

func load(t testing.TB, path string) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(path, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// writeFile writes content to name in a fresh temp folder.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
