// Package testmodel writes random-initialised Llama-architecture GGUF models
// that llama.cpp loads and runs: the shapes the shared test models do not
// have (more layers, other grouped-query ratios, quantized weights), for
// tests and benchmarks. `finetune testmodel` is its command-line face.
package testmodel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
)

// Config describes the model to write.
type Config struct {
	Layers  int
	Embd    int // hidden size
	Heads   int
	KVHeads int // grouped-query attention: Heads must be a multiple
	FF      int // feed-forward size
	Context int // context length written to the file (0: 256)
	// Type of the 2-D weights: "f32", "f16", "q8_0" or "q4_0" (norms stay F32).
	Type string
	// VocabFrom copies the tokenizer (and chat template) of this GGUF file.
	// When empty, a byte vocabulary is written: <unk>, <s>, </s> and the
	// 256 byte tokens of SentencePiece's byte fallback.
	VocabFrom string
	// ChatML adds the control tokens <|im_start|> and <|im_end|> and the
	// space token "▁" to the byte vocabulary and embeds a ChatML chat
	// template (<|im_end|> ends a turn), so the model renders and decodes
	// conversations as chat models do.
	ChatML bool
	// VocabSize pads the byte vocabulary with "<extra_N>" tokens up to this
	// size (0: the 259 byte-vocabulary tokens), for benchmark shapes.
	VocabSize int
	Seed      uint64
	// TiedOutput leaves out output.weight, so llama.cpp uses the token
	// embedding as the output head.
	TiedOutput bool
	// ResidualScale multiplies the spread of the weights that write into
	// the residual stream (attn_output, ffn_down; 0: 1), and EmbedStd is the
	// token embedding's (0: 1/sqrt(Embd)). With every weight N(0, 1/n_in),
	// each layer adds a random vector about sqrt(Embd) times the size of
	// the token's embedding, and the token is lost after the first layer;
	// quieter layers and a louder embedding keep it, as in a network at the
	// start of pretraining.
	ResidualScale float64
	EmbedStd      float64
	// Words adds whole words to the ChatML byte vocabulary as normal
	// tokens ("▁" for a leading space, as SentencePiece writes it), each
	// with the chain of its prefixes from two characters on, scored by
	// length. llama.cpp's SentencePiece tokenizer joins two adjacent
	// pieces only into a token of the vocabulary, best score first, so a
	// word is one token only if its prefixes are tokens too; other text
	// falls back to the byte tokens.
	Words []string
}

var fileTypes = map[string]struct {
	t  ggml.Type
	ft uint32 // general.file_type (llama_ftype)
}{
	"f32":  {ggml.TypeF32, 0},
	"f16":  {ggml.TypeF16, 1},
	"q4_0": {ggml.TypeQ4_0, 2},
	"q8_0": {ggml.TypeQ8_0, 7},
}

// Types lists the weight types Write accepts.
func Types() []string { return []string{"f32", "f16", "q8_0", "q4_0"} }

func (c *Config) validate() error {
	if c.Context == 0 {
		c.Context = 256
	}
	if c.Type == "" {
		c.Type = "f32"
	}
	c.Type = strings.ToLower(c.Type)
	ft, ok := fileTypes[c.Type]
	switch {
	case !ok:
		return fmt.Errorf("testmodel: unknown weight type %q (use one of %s)", c.Type, strings.Join(Types(), ", "))
	case c.VocabSize != 0 && (c.VocabFrom != "" || c.VocabSize < 262):
		return fmt.Errorf("testmodel: a vocabulary size applies to the byte vocabulary and must be at least 262")
	case c.ChatML && c.VocabFrom != "":
		return fmt.Errorf("testmodel: ChatML applies to the byte vocabulary")
	case len(c.Words) > 0 && (!c.ChatML || c.VocabSize != 0):
		return fmt.Errorf("testmodel: words extend the ChatML byte vocabulary, unpadded")
	case c.Layers < 1 || c.Embd < 1 || c.Heads < 1 || c.KVHeads < 1 || c.FF < 1 || c.Context < 1:
		return fmt.Errorf("testmodel: layers, embd, heads, kv-heads, ff and context must all be positive")
	case c.Embd%c.Heads != 0:
		return fmt.Errorf("testmodel: embd %d is not a multiple of heads %d", c.Embd, c.Heads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("testmodel: heads %d is not a multiple of kv-heads %d", c.Heads, c.KVHeads)
	case (c.Embd/c.Heads)%2 != 0:
		return fmt.Errorf("testmodel: the head size embd/heads = %d must be even for RoPE", c.Embd/c.Heads)
	}
	if bs := ft.t.BlockSize(); c.Embd%bs != 0 || c.FF%bs != 0 {
		return fmt.Errorf("testmodel: %s stores rows in blocks of %d values, so embd (%d) and ff (%d) must be multiples of %d", c.Type, bs, c.Embd, c.FF, bs)
	}
	return nil
}

// ByteVocab returns the metadata of the byte vocabulary: a SentencePiece
// ("llama") tokenizer holding <unk>, <s>, </s> and the 256 byte tokens.
func ByteVocab() []gguf.KV {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3} // unknown, control, control
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // byte
	}
	scores := make([]float32, len(tokens))
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: tokens},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_eos_token", Value: false},
	}
}

// ChatMLTemplate is the usual ChatML Jinja template; llama.cpp recognises
// it as its built-in "chatml".
const ChatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// addChatML appends the ChatML control tokens and template to a byte
// vocabulary.
func addChatML(kv []gguf.KV) []gguf.KV {
	var n int
	for i := range kv {
		switch v := kv[i].Value.(type) {
		case []string:
			n = len(v)
			// "▁" is SentencePiece's escaped space: as a token of its own it
			// decodes back to " " (as three byte tokens it would print "▁").
			kv[i].Value = append(v, "<|im_start|>", "<|im_end|>", "\u2581")
		case []float32:
			kv[i].Value = append(v, 0, 0, 0)
		case []int32:
			kv[i].Value = append(v, 3, 3, 1) // control, control, normal
		}
	}
	// No SentencePiece "▁" before each text fragment: a chat turn's text
	// starts with its own first character.
	return append(kv,
		gguf.KV{Key: "tokenizer.ggml.eot_token_id", Value: uint32(n + 1)},
		gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: false},
		gguf.KV{Key: "tokenizer.chat_template", Value: ChatMLTemplate})
}

// addWords appends words and their prefixes (from two characters) to a
// vocabulary, each once, scored by its length in characters: the longer
// piece wins a merge, so the tokenizer grows a word from its start.
func addWords(kv []gguf.KV, words []string) []gguf.KV {
	var pieces []string
	for i := range kv {
		if v, ok := kv[i].Value.([]string); ok {
			pieces = v
		}
	}
	seen := make(map[string]bool, len(pieces))
	for _, p := range pieces {
		seen[p] = true
	}
	var add []string
	for _, w := range words {
		r := []rune(w)
		for n := 2; n <= len(r); n++ {
			if p := string(r[:n]); !seen[p] {
				seen[p] = true
				add = append(add, p)
			}
		}
	}
	for i := range kv {
		switch v := kv[i].Value.(type) {
		case []string:
			kv[i].Value = append(v, add...)
		case []float32:
			for _, p := range add {
				v = append(v, float32(utf8.RuneCountInString(p)))
			}
			kv[i].Value = v
		case []int32:
			for range add {
				v = append(v, 1) // normal
			}
			kv[i].Value = v
		}
	}
	return kv
}

// padVocab extends a byte vocabulary with normal tokens up to n.
func padVocab(kv []gguf.KV, n int) []gguf.KV {
	for i := range kv {
		switch v := kv[i].Value.(type) {
		case []string:
			for j := len(v); j < n; j++ {
				v = append(v, fmt.Sprintf("<extra_%d>", j))
			}
			kv[i].Value = v
		case []float32:
			kv[i].Value = append(v, make([]float32, n-len(v))...)
		case []int32:
			for j := len(v); j < n; j++ {
				v = append(v, 1) // normal
			}
			kv[i].Value = v
		}
	}
	return kv
}

// vocabFrom copies every tokenizer.* key of a GGUF file.
func vocabFrom(path string) ([]gguf.KV, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	var kv []gguf.KV
	for _, e := range f.KV {
		if strings.HasPrefix(e.Key, "tokenizer.") {
			kv = append(kv, e)
		}
	}
	if _, ok := f.Strings("tokenizer.ggml.tokens"); !ok {
		return nil, fmt.Errorf("%s: has no tokenizer.ggml.tokens to copy a vocabulary from", path)
	}
	return kv, nil
}

// Write writes the model described by c to path (atomically).
func Write(path string, c Config) error {
	if err := c.validate(); err != nil {
		return err
	}
	var vocab []gguf.KV
	if c.VocabFrom != "" {
		var err error
		if vocab, err = vocabFrom(c.VocabFrom); err != nil {
			return err
		}
	} else {
		vocab = ByteVocab()
		if c.ChatML {
			vocab = addChatML(vocab)
		}
		if len(c.Words) > 0 {
			vocab = addWords(vocab, c.Words)
		}
		if c.VocabSize > 0 {
			vocab = padVocab(vocab, c.VocabSize)
		}
	}
	nVocab := 0
	for _, e := range vocab {
		if e.Key == "tokenizer.ggml.tokens" {
			nVocab = len(e.Value.([]string))
		}
	}
	ft := fileTypes[c.Type]
	headDim := c.Embd / c.Heads
	kvDim := headDim * c.KVHeads

	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.name", Value: fmt.Sprintf("finetune test model L%d E%d H%d/%d FF%d %s", c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.Type)},
		{Key: "general.file_type", Value: ft.ft},
		{Key: "llama.context_length", Value: uint32(c.Context)},
		{Key: "llama.embedding_length", Value: uint32(c.Embd)},
		{Key: "llama.block_count", Value: uint32(c.Layers)},
		{Key: "llama.feed_forward_length", Value: uint32(c.FF)},
		{Key: "llama.attention.head_count", Value: uint32(c.Heads)},
		{Key: "llama.attention.head_count_kv", Value: uint32(c.KVHeads)},
		{Key: "llama.rope.dimension_count", Value: uint32(headDim)},
		{Key: "llama.rope.freq_base", Value: float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: "llama.vocab_size", Value: uint32(nVocab)},
	}
	kv = append(kv, vocab...)

	rng := rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15))
	var tensors []gguf.Tensor
	var err error
	// weight adds a 2-D weight of ggml shape [nIn, nOut], N(0, 1/sqrt(nIn)).
	weight := func(name string, nIn, nOut int) {
		if err != nil {
			return
		}
		vals := make([]float32, nIn*nOut)
		std := 1 / math.Sqrt(float64(nIn))
		switch {
		case name == "token_embd.weight" && c.EmbedStd > 0:
			std = c.EmbedStd
		case (strings.HasSuffix(name, "attn_output.weight") || strings.HasSuffix(name, "ffn_down.weight")) && c.ResidualScale > 0:
			std *= c.ResidualScale
		}
		for i := range vals {
			vals[i] = float32(rng.NormFloat64() * std)
		}
		var data []byte
		data, err = ggml.Encode(ft.t, vals, nIn)
		tensors = append(tensors, gguf.Tensor{Name: name, Dims: []uint64{uint64(nIn), uint64(nOut)}, Type: gguf.TensorType(ft.t), Data: data})
	}
	norm := func(name string) {
		vals := make([]float32, c.Embd)
		for i := range vals {
			vals[i] = 1
		}
		data, _ := ggml.Encode(ggml.TypeF32, vals, c.Embd)
		tensors = append(tensors, gguf.Tensor{Name: name, Dims: []uint64{uint64(c.Embd)}, Type: gguf.F32, Data: data})
	}
	weight("token_embd.weight", c.Embd, nVocab)
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		norm(p + "attn_norm.weight")
		weight(p+"attn_q.weight", c.Embd, c.Embd)
		weight(p+"attn_k.weight", c.Embd, kvDim)
		weight(p+"attn_v.weight", c.Embd, kvDim)
		weight(p+"attn_output.weight", c.Embd, c.Embd)
		norm(p + "ffn_norm.weight")
		weight(p+"ffn_gate.weight", c.Embd, c.FF)
		weight(p+"ffn_up.weight", c.Embd, c.FF)
		weight(p+"ffn_down.weight", c.FF, c.Embd)
	}
	norm("output_norm.weight")
	if !c.TiedOutput {
		weight("output.weight", c.Embd, nVocab)
	}
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return gguf.Write(path, kv, tensors)
}
