package modelinfo

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/shared"
)

func TestDescribeStories(t *testing.T) {
	f, err := gguf.Open(shared.Path(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	in := Describe(f, false)
	h := in.Hyper
	if h == nil {
		t.Fatal("no hyper-parameters")
	}
	want := Hyper{Architecture: "llama", ContextLength: 2048, Embedding: 64, Layers: 5, FeedForward: 172, Heads: 8, KVHeads: 4, HeadDim: 8, RopeDim: 8, RopeFreqBase: 10000, RMSEpsilon: 1e-5, VocabSize: 512}
	if *h != want {
		t.Fatalf("hyper-parameters\n got %+v\nwant %+v", *h, want)
	}
	if in.Params != 292800 || in.TensorCount != 48 || len(in.TensorTypes) != 1 || in.TensorTypes[0].Type != "F32" {
		t.Fatalf("params %d, tensors %d, types %+v", in.Params, in.TensorCount, in.TensorTypes)
	}
	var roles []string
	for _, s := range in.Vocab.Special {
		roles = append(roles, s.Role+"="+s.Text)
	}
	// stories260K stores padding and separator ids as -1 (uint32): absent.
	if got := strings.Join(roles, ","); got != "bos=<s>,eos=</s>,unknown=<unk>" {
		t.Fatalf("special tokens %s", got)
	}
	if in.Vocab.Type != "SPM (SentencePiece)" || in.Vocab.Size != 512 || in.ChatTemplate {
		t.Fatalf("vocab %+v, template %v", in.Vocab, in.ChatTemplate)
	}
	if err := CheckLlama(f); err != nil {
		t.Fatal(err)
	}
}

// rewrite copies src with edit applied to its metadata and tensor list.
func rewrite(t *testing.T, src string, edit func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor)) *gguf.File {
	t.Helper()
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	var ts []gguf.Tensor
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
	}
	kv := append([]gguf.KV(nil), f.KV...)
	kv, ts = edit(kv, ts)
	out := filepath.Join(t.TempDir(), "edited.gguf")
	if err := gguf.Write(out, kv, ts); err != nil {
		t.Fatal(err)
	}
	g, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func setKV(kv []gguf.KV, key string, v any) []gguf.KV {
	for i := range kv {
		if kv[i].Key == key {
			kv[i].Value = v
		}
	}
	return kv
}

func TestCheckLlamaRejects(t *testing.T) {
	src := shared.Path(t, "models/stories260K.gguf")
	for _, c := range []struct {
		name string
		edit func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor)
		want string
	}{
		{"more blocks than tensors", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			return setKV(kv, "llama.block_count", uint32(6)), ts
		}, "blk.5.attn_norm.weight is missing"},
		{"zero KV heads", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			return setKV(kv, "llama.attention.head_count_kv", uint32(0)), ts
		}, "inconsistent attention shape"},
		{"wrong KV heads", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			return setKV(kv, "llama.attention.head_count_kv", uint32(8)), ts
		}, "attn_k.weight has shape [64 32], but the hyper-parameters imply [64 64]"},
		{"duplicate token", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			for i := range kv {
				if kv[i].Key == "tokenizer.ggml.tokens" {
					toks := append([]string(nil), kv[i].Value.([]string)...)
					toks[300] = toks[299]
					kv[i].Value = toks
				}
			}
			return kv, ts
		}, "twice"},
		{"bos out of range", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			return setKV(kv, "tokenizer.ggml.bos_token_id", uint32(9999)), ts
		}, "bos_token_id is 9999"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckLlama(rewrite(t, src, c.edit))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "edited.gguf") {
				t.Fatalf("err = %v, want it to name the file and say %q", err, c.want)
			}
		})
	}
}

// TestAdapterIsNotABase: a LoRA adapter where a base model goes is named
// as one, not reported as a model missing its hyper-parameters.
func TestAdapterIsNotABase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapter.gguf")
	a := make([]byte, 64*4*4)
	err := gguf.Write(path, []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: float32(16)},
	}, []gguf.Tensor{
		{Name: "blk.0.attn_q.weight.lora_a", Dims: []uint64{64, 4}, Type: gguf.F32, Data: a},
		{Name: "blk.0.attn_q.weight.lora_b", Dims: []uint64{4, 64}, Type: gguf.F32, Data: a},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func(*gguf.File) error{
		"ParseHyper": func(f *gguf.File) error { _, err := ParseHyper(f); return err },
		"CheckLlama": CheckLlama,
	} {
		err := check(f)
		if err == nil || !strings.HasPrefix(err.Error(), path+" is a LoRA adapter, not a base model") || !strings.Contains(err.Error(), "base:") {
			t.Errorf("%s: %v; want it to name the file as a LoRA adapter and say where the base goes", name, err)
		}
	}
	if in := Describe(f, false); in.Adapter == nil || in.Adapter.Rank != 4 {
		t.Errorf("Describe: adapter %+v, want rank 4", in.Adapter)
	}
	stories := shared.Path(t, "models/stories260K.gguf")
	ckpt := rewrite(t, stories, func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
		return append(kv, gguf.KV{Key: "general.type", Value: "finetune-checkpoint"}), ts
	})
	if err := CheckLlama(ckpt); err == nil || !strings.Contains(err.Error(), `is not a model (general.type is "finetune-checkpoint")`) {
		t.Errorf("a checkpoint: %v", err)
	}
	model := rewrite(t, stories, func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
		return append(kv, gguf.KV{Key: "general.type", Value: "model"}), ts
	})
	if err := CheckLlama(model); err != nil {
		t.Errorf("general.type model: %v", err)
	}
}
