// Package modelinfo describes a GGUF model from its metadata alone: the
// hyper-parameters the rest of finetune builds on, and the summary
// `finetune inspect` prints. It reads the file with internal/gguf and never
// loads weights.
package modelinfo

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/finetune-dev/finetune/internal/gguf"
)

// Hyper are the hyper-parameters of a Llama-family model.
type Hyper struct {
	Architecture  string  `json:"architecture"`
	ContextLength int     `json:"context_length"`
	Embedding     int     `json:"embedding_length"`
	Layers        int     `json:"block_count"`
	FeedForward   int     `json:"feed_forward_length"`
	Heads         int     `json:"head_count"`
	KVHeads       int     `json:"head_count_kv"`
	HeadDim       int     `json:"head_dim"`
	RopeDim       int     `json:"rope_dimension_count"`
	RopeFreqBase  float64 `json:"rope_freq_base"`
	RMSEpsilon    float64 `json:"rms_norm_epsilon"`
	VocabSize     int     `json:"vocab_size"`
}

// ParseHyper reads the hyper-parameters, with llama.cpp's defaults for the
// optional ones, and checks they are consistent. A file that is not a model
// (a LoRA adapter given where a base model goes) is an error that says so.
func ParseHyper(f *gguf.File) (Hyper, error) {
	arch := f.Architecture()
	h := Hyper{Architecture: arch, RopeFreqBase: 10000, RMSEpsilon: 1e-5}
	if err := CheckModel(f); err != nil {
		return h, err
	}
	if arch == "" {
		return h, fmt.Errorf("%s: no general.architecture", f.Path)
	}
	need := func(key string, dst *int) error {
		v, ok := f.Uint(arch + "." + key)
		if !ok {
			return fmt.Errorf("%s: missing %s.%s", f.Path, arch, key)
		}
		*dst = int(v)
		return nil
	}
	for _, k := range []struct {
		key string
		dst *int
	}{{"context_length", &h.ContextLength}, {"embedding_length", &h.Embedding}, {"block_count", &h.Layers}, {"feed_forward_length", &h.FeedForward}, {"attention.head_count", &h.Heads}} {
		if err := need(k.key, k.dst); err != nil {
			return h, err
		}
	}
	h.KVHeads = h.Heads
	if v, ok := f.Uint(arch + ".attention.head_count_kv"); ok {
		h.KVHeads = int(v)
	}
	if h.Heads == 0 || h.KVHeads == 0 || h.Embedding%h.Heads != 0 || h.Heads%h.KVHeads != 0 {
		return h, fmt.Errorf("%s: inconsistent attention shape: embedding %d, %d heads, %d KV heads", f.Path, h.Embedding, h.Heads, h.KVHeads)
	}
	h.HeadDim = h.Embedding / h.Heads
	if v, ok := f.Uint(arch + ".attention.key_length"); ok {
		h.HeadDim = int(v)
	}
	h.RopeDim = h.HeadDim
	if v, ok := f.Uint(arch + ".rope.dimension_count"); ok {
		h.RopeDim = int(v)
	}
	if v, ok := f.Float(arch + ".rope.freq_base"); ok {
		h.RopeFreqBase = shortest32(v)
	}
	if v, ok := f.Float(arch + ".attention.layer_norm_rms_epsilon"); ok {
		h.RMSEpsilon = shortest32(v)
	}
	if toks, ok := f.Strings("tokenizer.ggml.tokens"); ok {
		h.VocabSize = len(toks)
	} else if v, ok := f.Uint(arch + ".vocab_size"); ok {
		h.VocabSize = int(v)
	}
	return h, nil
}

// isAdapter reports whether f is a LoRA adapter (general.type "adapter",
// as llama.cpp writes it).
func isAdapter(f *gguf.File) bool {
	t, _ := f.String("general.type")
	return t == "adapter"
}

// CheckModel refuses a GGUF file that is not a model: a LoRA adapter, or a
// file whose general.type says it is something else (models have "model"
// or none).
func CheckModel(f *gguf.File) error {
	t, _ := f.String("general.type")
	switch {
	case t == "" || t == "model":
		return nil
	case isAdapter(f):
		return fmt.Errorf("%s is a LoRA adapter, not a base model: give the base model it was trained on instead (a recipe's base:, --model, --base), and the adapter where an adapter goes (--adapter, --run, a contestant's adapter:)", f.Path)
	}
	return fmt.Errorf("%s is not a model (general.type is %q): give a base model GGUF file", f.Path, t)
}

// shortest32 rounds a value stored as float32 to the shortest decimal that
// reads back as the same float32 (1e-05, not 9.999999747378752e-06).
func shortest32(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64)
	if err != nil {
		return v
	}
	return r
}

// TypeCount sums the tensors of one type.
type TypeCount struct {
	Type    string `json:"type"`
	Tensors int    `json:"tensors"`
	Params  uint64 `json:"params"`
	Bytes   uint64 `json:"bytes"`
}

// SpecialToken is a token the tokenizer treats specially.
type SpecialToken struct {
	Role string `json:"role"` // bos, eos, eot, unknown, padding, ...
	ID   int    `json:"id"`
	Text string `json:"text"`
}

// Vocab describes the tokenizer.
type Vocab struct {
	Model   string         `json:"model"` // tokenizer.ggml.model: llama, gpt2, ...
	Type    string         `json:"type"`  // SPM, BPE, ...
	Pre     string         `json:"pre,omitempty"`
	Size    int            `json:"size"`
	Special []SpecialToken `json:"special_tokens"`
	AddBOS  *bool          `json:"add_bos,omitempty"`
	AddEOS  *bool          `json:"add_eos,omitempty"`
}

// Tensor is one row of the tensor list.
type Tensor struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []uint64 `json:"shape"`
	Bytes uint64   `json:"bytes"`
}

// Info is everything `finetune inspect` reports.
type Info struct {
	Path               string         `json:"path"`
	FileSize           int64          `json:"file_size"`
	GGUFVersion        uint32         `json:"gguf_version"`
	Name               string         `json:"name,omitempty"`
	Architecture       string         `json:"architecture"`
	FileType           string         `json:"file_type"`
	Hyper              *Hyper         `json:"hyper_parameters,omitempty"`
	ArchKeys           map[string]any `json:"architecture_keys"`
	Params             uint64         `json:"params"`
	TensorCount        int            `json:"tensor_count"`
	TensorTypes        []TypeCount    `json:"tensor_types"`
	Vocab              *Vocab         `json:"vocab,omitempty"`
	ChatTemplate       bool           `json:"chat_template"`
	ChatTemplateLength int            `json:"chat_template_length,omitempty"`
	ContextLength      int            `json:"context_length"`
	Adapter            *AdapterInfo   `json:"adapter,omitempty"`
	Tensors            []Tensor       `json:"tensors,omitempty"`
}

// AdapterInfo describes a LoRA adapter file.
type AdapterInfo struct {
	Type  string  `json:"type"`
	Alpha float64 `json:"alpha"`
	Rank  int     `json:"rank"`
}

var vocabTypes = map[string]string{
	"llama": "SPM (SentencePiece)", "gpt2": "BPE (byte-level)", "bert": "WPM (WordPiece)",
	"t5": "UGM (Unigram)", "rwkv": "RWKV", "plamo2": "PLaMo-2", "no_vocab": "none",
}

var specialKeys = []struct{ role, key string }{
	{"bos", "tokenizer.ggml.bos_token_id"},
	{"eos", "tokenizer.ggml.eos_token_id"},
	{"eot", "tokenizer.ggml.eot_token_id"},
	{"eom", "tokenizer.ggml.eom_token_id"},
	{"unknown", "tokenizer.ggml.unknown_token_id"},
	{"padding", "tokenizer.ggml.padding_token_id"},
	{"separator", "tokenizer.ggml.seperator_token_id"},
	{"mask", "tokenizer.ggml.mask_token_id"},
}

// Describe summarises f. withTensors adds the full tensor list.
func Describe(f *gguf.File, withTensors bool) *Info {
	in := &Info{
		Path:         f.Path,
		FileSize:     f.FileSize,
		GGUFVersion:  f.Version,
		Architecture: f.Architecture(),
		ArchKeys:     map[string]any{},
		TensorCount:  len(f.Tensors),
	}
	in.Name, _ = f.String("general.name")
	if ft, ok := f.Uint("general.file_type"); ok {
		in.FileType = gguf.FileTypeName(uint32(ft))
	}
	if in.Architecture != "" {
		prefix := in.Architecture + "."
		for _, kv := range f.KV {
			if strings.HasPrefix(kv.Key, prefix) {
				in.ArchKeys[strings.TrimPrefix(kv.Key, prefix)] = kv.Value
			}
		}
	}
	if isAdapter(f) {
		a := &AdapterInfo{}
		a.Type, _ = f.String("adapter.type")
		a.Alpha, _ = f.Float("adapter.lora.alpha")
		for _, t := range f.Tensors {
			if strings.HasSuffix(t.Name, ".lora_a") && len(t.Dims) == 2 {
				a.Rank = int(t.Dims[1])
				break
			}
		}
		in.Adapter = a
	} else if h, err := ParseHyper(f); err == nil {
		in.Hyper = &h
		in.ContextLength = h.ContextLength
	}

	byType := map[string]*TypeCount{}
	for _, t := range f.Tensors {
		name := t.Type.String()
		tc := byType[name]
		if tc == nil {
			tc = &TypeCount{Type: name}
			byType[name] = tc
		}
		tc.Tensors++
		tc.Params += t.NumElements()
		tc.Bytes += t.Size()
		in.Params += t.NumElements()
		if withTensors {
			in.Tensors = append(in.Tensors, Tensor{Name: t.Name, Type: name, Shape: t.Dims, Bytes: t.Size()})
		}
	}
	for _, tc := range byType {
		in.TensorTypes = append(in.TensorTypes, *tc)
	}
	sort.Slice(in.TensorTypes, func(i, j int) bool { return in.TensorTypes[i].Params > in.TensorTypes[j].Params })

	if model, ok := f.String("tokenizer.ggml.model"); ok {
		v := &Vocab{Model: model, Type: vocabTypes[model]}
		if v.Type == "" {
			v.Type = "unknown"
		}
		v.Pre, _ = f.String("tokenizer.ggml.pre")
		tokens, _ := f.Strings("tokenizer.ggml.tokens")
		v.Size = len(tokens)
		for _, s := range specialKeys {
			id, ok := f.Int(s.key)
			if !ok || id < 0 || int(id) >= len(tokens) {
				continue // absent, or -1 stored as uint32
			}
			st := SpecialToken{Role: s.role, ID: int(id)}
			if int(id) < len(tokens) {
				st.Text = tokens[id]
			}
			v.Special = append(v.Special, st)
		}
		if b, ok := f.Get("tokenizer.ggml.add_bos_token"); ok {
			if bb, ok := b.(bool); ok {
				v.AddBOS = &bb
			}
		}
		if b, ok := f.Get("tokenizer.ggml.add_eos_token"); ok {
			if bb, ok := b.(bool); ok {
				v.AddEOS = &bb
			}
		}
		in.Vocab = v
	}
	if tmpl, ok := f.String("tokenizer.chat_template"); ok {
		in.ChatTemplate = true
		in.ChatTemplateLength = len(tmpl)
	}
	return in
}
