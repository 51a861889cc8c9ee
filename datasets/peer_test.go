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
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/shared"
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
	var recs []Record
	for i, c := range renderCases {
		recs = append(recs, Record{Messages: c, Source: fmt.Sprintf("case %d", i)})
	}
	convs := peerConversations(recs)
	dir := t.TempDir()
	var jobs []map[string]any
	for _, m := range models {
		jobs = append(jobs, map[string]any{"op": "chat", "gguf": m.path, "conversations": convs, "out": filepath.Join(dir, m.name+".json")})
	}
	pyref.Run(t, jobs)

	for _, mc := range models {
		t.Run(mc.name, func(t *testing.T) {
			hf := readPeerChat(t, filepath.Join(dir, mc.name+".json"))
			m, err := llama.LoadModel(mc.path, llama.ModelOptions{VocabOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r, err := NewRenderer(m, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checked := comparePeerChat(t, r, recs, hf, 2)
			if t.Failed() {
				return
			}
			t.Logf("%s: %d conversations: examples, masks and eval prompts equal apply_chat_template and TRL's assistant mask", mc.name, checked)
		})
	}
}

// peerChat is what a "chat" job of peer.py says of one conversation.
type peerChat struct {
	Tokens     []int32 `json:"tokens"`
	Prompt     []int32 `json:"prompt"`
	Mask       []int   `json:"assistant_mask"`
	MaskTokens []int32 `json:"mask_tokens"`
	MaskError  string  `json:"assistant_mask_error"`
	Text       string  `json:"text"`
	// AsLoaded is Tokens under the pre-tokenizer transformers' GGUF
	// loader gives the vocabulary, when peer.py replaced it with the
	// model's own.
	AsLoaded []int32 `json:"tokens_as_loaded"`
}

func readPeerChat(t *testing.T, path string) []peerChat {
	t.Helper()
	var hf []peerChat
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &hf); err != nil {
		t.Fatal(err)
	}
	return hf
}

// peerConversations are recs as apply_chat_template takes them.
func peerConversations(recs []Record) [][]map[string]string {
	convs := make([][]map[string]string, len(recs))
	for i, rec := range recs {
		convs[i] = []map[string]string{}
		for _, m := range rec.Messages {
			convs[i] = append(convs[i], map[string]string{"role": m.Role, "content": m.Content})
		}
	}
	return convs
}

// comparePeerChat checks, record by record, that r's training example is
// the conversation as apply_chat_template tokenizes it (up to the end of
// its last assistant turn), that its trained tokens are exactly TRL's
// assistant mask, and that its eval prompt is the conversation before its
// last turn with the generation prompt; it logs record logCase (-1: none)
// and returns how many records it checked.
func comparePeerChat(t *testing.T, r *Renderer, recs []Record, hf []peerChat, logCase int) int {
	t.Helper()
	m := r.Model()
	if len(hf) != len(recs) {
		t.Fatalf("Hugging Face answered for %d conversations, we sent %d", len(hf), len(recs))
	}
	spellHF := func(ts []int32) string {
		var b []byte
		for _, tok := range ts {
			b = append(b, m.Piece(tok, true)...)
		}
		return fmt.Sprintf("%q", b)
	}
	checked := 0
	for i, rec := range recs {
		h := hf[i]
		exs, err := r.Render(rec)
		if err != nil {
			t.Fatalf("%s: %v", rec.Source, err)
		}
		if len(h.Mask) == 0 {
			t.Fatalf("%s: no assistant mask from Hugging Face (%s): the template lost its generation markers", rec.Source, h.MaskError)
		}
		if h.MaskTokens != nil && !slices.Equal(h.MaskTokens, h.Tokens) {
			t.Fatalf("%s: the template with generation markers renders\n  %s\nwhere the model's own renders\n  %s", rec.Source, spellHF(h.MaskTokens), spellHF(h.Tokens))
		}
		if len(exs) != 1 {
			t.Errorf("%s: %d examples, want 1 (Hugging Face tokenizes the conversation as one sequence)", rec.Source, len(exs))
			continue
		}
		ex := exs[0]
		n := len(ex.Tokens)
		if n > len(h.Tokens) || !slices.Equal(ex.Tokens, h.Tokens[:n]) {
			t.Errorf("%s: our example\n  %v %s\nis not the start of apply_chat_template's\n  %v %s", rec.Source, ex.Tokens, spellHF(ex.Tokens), h.Tokens, spellHF(h.Tokens))
			continue
		}
		// What apply_chat_template has after our example's last token
		// (ChatML's "\n" after the last <|im_end|>) is the template's text
		// between turns, never trained.
		for k := n; k < len(h.Tokens); k++ {
			if h.Mask[k] != 0 {
				t.Errorf("%s: Hugging Face trains token %d (%s), past the end of our example", rec.Source, k, spellHF(h.Tokens[k:k+1]))
			}
		}
		if n < len(h.Tokens) && len(h.Tokens)-n > 1 {
			t.Errorf("%s: apply_chat_template has %d tokens after our example's end (%s), more than a separator", rec.Source, len(h.Tokens)-n, spellHF(h.Tokens[n:]))
		}
		for k := 0; k < n; k++ {
			if (ex.Weights[k] > 0) != (h.Mask[k] != 0) {
				t.Errorf("%s: token %d (%s): we train it %v, TRL's assistant mask says %v\n  ours %v\n  TRL  %v", rec.Source, k, spellHF(ex.Tokens[k:k+1]), ex.Weights[k] > 0, h.Mask[k] != 0, ex.Weights, h.Mask[:n])
				break
			}
		}
		cs, err := r.Case(rec)
		if err != nil {
			t.Fatalf("%s: %v", rec.Source, err)
		}
		if !slices.Equal(cs.PromptTokens, h.Prompt) {
			t.Errorf("%s: eval prompt\n  %v %s\nwant apply_chat_template(add_generation_prompt)\n  %v %s", rec.Source, cs.PromptTokens, spellHF(cs.PromptTokens), h.Prompt, spellHF(h.Prompt))
		}
		if i == logCase {
			var trained []int32
			for k, tok := range ex.Tokens {
				if ex.Weights[k] > 0 {
					trained = append(trained, tok)
				}
			}
			t.Logf("%s: %d tokens %s, trained %s; eval prompt %s", rec.Source, n, spellHF(ex.Tokens), spellHF(trained), spellHF(cs.PromptTokens))
		}
		checked++
	}
	return checked
}

// smolChatTurn is the expression of SmolLM2's template that writes every
// turn, and smolChatTurnMarked the same with TRL's generation markers
// around an assistant turn's text and end-of-turn token.
const (
	smolChatTurn       = `{{'<|im_start|>' + message['role'] + '` + "\n" + `' + message['content'] + '<|im_end|>' + '` + "\n" + `'}}`
	smolChatTurnMarked = `{{'<|im_start|>' + message['role'] + '` + "\n" + `'}}{% if message['role'] == 'assistant' %}{% generation %}` +
		`{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '` + "\n" + `' }}`
)

// TestPeerChatTemplateSmolLM2 holds the rendering of the shipped recipes'
// data on a real model to Hugging Face's: SmolLM2-135M-Instruct's byte-level
// BPE tokenizer and its own ChatML template, which adds a default system
// turn to a conversation that has none. The first 20 records of each data
// file of both recipes, and the first 5 of each again without their system
// prompt, are rendered by finetune and by apply_chat_template of the
// tokenizer transformers builds from the same GGUF; examples, trained
// tokens (against TRL's assistant mask, the template's turns marked with
// {% generation %} for it) and eval prompts must agree token for token.
func TestPeerChatTemplateSmolLM2(t *testing.T) {
	pyref.Need(t)
	path := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	m, err := llama.LoadModel(path, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tmpl := m.ChatTemplate()
	if strings.Count(tmpl, smolChatTurn) != 1 {
		t.Fatalf("%s: the chat template is not the one this test marks for TRL's assistant mask:\n%s", path, tmpl)
	}
	marked := strings.Replace(tmpl, smolChatTurn, smolChatTurnMarked, 1)

	const first, withoutSystem = 20, 5
	var recs []Record
	for _, f := range []string{"customer-support/train.jsonl", "customer-support/eval.jsonl", "legal/train.jsonl", "legal/eval.jsonl"} {
		rd, err := Open(filepath.Join("..", "recipes", "data", f), ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < first; i++ {
			rec, err := rd.Next()
			if err != nil {
				t.Fatalf("%s: record %d: %v", f, i+1, err)
			}
			recs = append(recs, rec)
			if i < withoutSystem && rec.Messages[0].Role == "system" {
				bare := rec
				bare.Messages = rec.Messages[1:]
				bare.Source += " without its system prompt"
				recs = append(recs, bare)
			}
		}
		rd.Close()
	}
	out := filepath.Join(t.TempDir(), "smollm2.json")
	pyref.Run(t, []map[string]any{{"op": "chat", "gguf": path, "conversations": peerConversations(recs), "mask_template": marked, "out": out}})
	hf := readPeerChat(t, out)

	r, err := NewRenderer(m, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bare := 0
	for _, rec := range recs {
		if rec.Messages[0].Role != "system" {
			bare++
		}
	}
	// transformers' GGUF loader does not know the pre-tokenizer "smollm"
	// and splits as GPT-2 does; peer.py tokenizes with SmolLM2's own
	// (digits isolated first), as llama.cpp does. Say how many
	// conversations the loader's would have tokenized differently.
	loaderDiffers := 0
	for i, h := range hf {
		if h.AsLoaded == nil {
			t.Fatalf("%s: peer.py kept transformers' pre-tokenizer for SmolLM2 (has transformers learnt \"smollm\"? then drop the replacement)", recs[i].Source)
		}
		if !slices.Equal(h.AsLoaded, h.Tokens) {
			loaderDiffers++
		}
	}
	checked := comparePeerChat(t, r, recs, hf, 1)
	if t.Failed() {
		return
	}
	t.Logf("SmolLM2: %d conversations of both recipes (%d without a system prompt): examples, masks and eval prompts equal apply_chat_template and TRL's assistant mask", checked, bare)
	t.Logf("transformers' GGUF tokenizer as loaded (GPT-2's split, no \"smollm\" pre-tokenizer) tokenizes %d of the %d differently", loaderDiffers, len(hf))
}
