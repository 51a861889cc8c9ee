package datasets

// Rendering checked against Hugging Face: the tokens of our training
// examples and eval prompts are those of tokenizer.apply_chat_template of
// the tokenizer transformers builds from the same GGUF, and the trained
// tokens are exactly TRL's assistant-only mask. Needs the references of
// scripts/install-pyref.sh; skips loudly without them.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// The ChatML and Llama-3 templates as their models ship them, with TRL's
// {% generation %} markers around what an assistant turn trains on (its
// text and end-of-turn token), which return_assistant_tokens_mask reads.
// llama.cpp recognises both by their markers and renders them with its
// built-in chatml and llama3 code.
const (
	peerChatML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}" +
		"{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}" +
		"{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}" +
		"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	peerLlama3 = "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}" +
		"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}" +
		"{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}" +
		"{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}" +
		"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

// peerVocabModel writes a one-layer model whose vocabulary is the byte
// vocabulary plus the given control tokens and "▁", with the template and
// the BOS, EOS and end-of-turn tokens named.
func peerVocabModel(t *testing.T, name, template string, specials []string, bos, eot string, addBOS bool) string {
	t.Helper()
	kv := testmodel.ByteVocab()
	id := map[string]uint32{}
	for i := range kv {
		switch v := kv[i].Value.(type) {
		case []string:
			for _, s := range specials {
				id[s] = uint32(len(v))
				v = append(v, s)
			}
			kv[i].Value = append(v, "\u2581")
		case []float32:
			kv[i].Value = append(v, make([]float32, len(specials)+1)...)
		case []int32:
			for range specials {
				v = append(v, 3) // control
			}
			kv[i].Value = append(v, 1)
		}
	}
	for i := range kv {
		switch kv[i].Key {
		case "tokenizer.ggml.add_bos_token":
			kv[i].Value = addBOS
		case "tokenizer.ggml.bos_token_id":
			if bos != "" {
				kv[i].Value = id[bos]
			}
		}
	}
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.eot_token_id", Value: id[eot]},
		gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: false},
		gguf.KV{Key: "tokenizer.chat_template", Value: template})
	dir := t.TempDir()
	vocab := filepath.Join(dir, name+"-vocab.gguf")
	if err := gguf.Write(vocab, append([]gguf.KV{{Key: "general.architecture", Value: "llama"}}, kv...), nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".gguf")
	if err := testmodel.Write(p, testmodel.Config{Layers: 1, Embd: 32, Heads: 2, KVHeads: 1, FF: 64, VocabFrom: vocab, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPeerChatTemplate renders renderCases with the ChatML and Llama-3
// templates and compares, token for token, with apply_chat_template:
// each training example is the conversation as Hugging Face tokenizes it
// (up to the end of its last assistant turn), its trained tokens are
// exactly TRL's assistant mask, and each eval prompt is the conversation
// before its last turn with the generation prompt.
func TestPeerChatTemplate(t *testing.T) {
	pyref.Need(t)
	models := []struct{ name, path string }{
		{"chatml", peerVocabModel(t, "chatml", peerChatML, []string{"<|im_start|>", "<|im_end|>"}, "", "<|im_end|>", false)},
		{"llama3", peerVocabModel(t, "llama3", peerLlama3, []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, "<|begin_of_text|>", "<|eot_id|>", true)},
	}
	convs := make([][]map[string]string, len(renderCases))
	for i, c := range renderCases {
		for _, m := range c {
			convs[i] = append(convs[i], map[string]string{"role": m.Role, "content": m.Content})
		}
	}
	dir := t.TempDir()
	var jobs []map[string]any
	for _, m := range models {
		jobs = append(jobs, map[string]any{"op": "chat", "gguf": m.path, "conversations": convs, "out": filepath.Join(dir, m.name+".json")})
	}
	pyref.Run(t, jobs)

	for _, mc := range models {
		t.Run(mc.name, func(t *testing.T) {
			var hf []struct {
				Tokens    []int32 `json:"tokens"`
				Prompt    []int32 `json:"prompt"`
				Mask      []int   `json:"assistant_mask"`
				MaskError string  `json:"assistant_mask_error"`
				Text      string  `json:"text"`
			}
			b, err := os.ReadFile(filepath.Join(dir, mc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &hf); err != nil {
				t.Fatal(err)
			}
			m, err := llama.LoadModel(mc.path, llama.ModelOptions{VocabOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r, err := NewRenderer(m, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			for i, c := range renderCases {
				h := hf[i]
				spellHF := func(ts []int32) string {
					var b []byte
					for _, tok := range ts {
						b = append(b, m.Piece(tok, true)...)
					}
					return fmt.Sprintf("%q", b)
				}
				rec := Record{Messages: c, Source: fmt.Sprintf("case %d", i)}
				exs, err := r.Render(rec)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				if len(h.Mask) == 0 {
					t.Fatalf("case %d: no assistant mask from Hugging Face (%s): the template lost its generation markers", i, h.MaskError)
				}
				if len(exs) != 1 {
					t.Errorf("case %d: %d examples, want 1 (Hugging Face tokenizes the conversation as one sequence)", i, len(exs))
					continue
				}
				ex := exs[0]
				n := len(ex.Tokens)
				if n > len(h.Tokens) || !slices.Equal(ex.Tokens, h.Tokens[:n]) {
					t.Errorf("case %d: our example\n  %v %s\nis not the start of apply_chat_template's\n  %v %s", i, ex.Tokens, spellHF(ex.Tokens), h.Tokens, spellHF(h.Tokens))
					continue
				}
				// What apply_chat_template has after our example's last
				// token (ChatML's "\n" after the last <|im_end|>) is the
				// template's text between turns, never trained.
				for k := n; k < len(h.Tokens); k++ {
					if h.Mask[k] != 0 {
						t.Errorf("case %d: Hugging Face trains token %d (%s), past the end of our example", i, k, spellHF(h.Tokens[k:k+1]))
					}
				}
				if n < len(h.Tokens) && len(h.Tokens)-n > 1 {
					t.Errorf("case %d: apply_chat_template has %d tokens after our example's end (%s), more than a separator", i, len(h.Tokens)-n, spellHF(h.Tokens[n:]))
				}
				for k := 0; k < n; k++ {
					if (ex.Weights[k] > 0) != (h.Mask[k] != 0) {
						t.Errorf("case %d: token %d (%s): we train it %v, TRL's assistant mask says %v\n  ours %v\n  TRL  %v", i, k, spellHF(ex.Tokens[k:k+1]), ex.Weights[k] > 0, h.Mask[k] != 0, ex.Weights, h.Mask[:n])
						break
					}
				}
				cs, err := r.Case(rec)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				if !slices.Equal(cs.PromptTokens, h.Prompt) {
					t.Errorf("case %d: eval prompt\n  %v %s\nwant apply_chat_template(add_generation_prompt)\n  %v %s", i, cs.PromptTokens, spellHF(cs.PromptTokens), h.Prompt, spellHF(h.Prompt))
				}
				if i == 2 {
					var trained []int32
					for k, tok := range ex.Tokens {
						if ex.Weights[k] > 0 {
							trained = append(trained, tok)
						}
					}
					t.Logf("case %d: %d tokens %s, trained %s; eval prompt %s", i, n, spellHF(ex.Tokens), spellHF(trained), spellHF(cs.PromptTokens))
				}
				checked++
			}
			if t.Failed() {
				return
			}
			t.Logf("%s: %d conversations: examples, masks and eval prompts equal apply_chat_template and TRL's assistant mask", mc.name, checked)
		})
	}
}
