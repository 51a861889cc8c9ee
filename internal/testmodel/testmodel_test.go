package testmodel

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestTypesLoadAndGenerate writes a GQA model in every weight type, loads it
// in llama.cpp, generates from it, and checks that the file describes itself
// exactly as configured.
func TestTypesLoadAndGenerate(t *testing.T) {
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.gguf")
			c := Config{Layers: 3, Embd: 64, Heads: 8, KVHeads: 2, FF: 160, Context: 128, Type: typ, Seed: 7}
			if err := Write(path, c); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			in := modelinfo.Describe(f, true)
			h := in.Hyper
			if h == nil || h.Layers != 3 || h.Embedding != 64 || h.Heads != 8 || h.KVHeads != 2 || h.FeedForward != 160 || h.ContextLength != 128 || h.HeadDim != 8 || h.VocabSize != 259 {
				t.Fatalf("inspect reports %+v", h)
			}
			wantType := strings.ToUpper(typ)
			shapes := map[string][]uint64{
				"token_embd.weight": {64, 259}, "output.weight": {64, 259}, "output_norm.weight": {64},
				"blk.2.attn_q.weight": {64, 64}, "blk.2.attn_k.weight": {64, 16}, "blk.2.attn_v.weight": {64, 16},
				"blk.2.attn_output.weight": {64, 64}, "blk.2.ffn_gate.weight": {64, 160}, "blk.2.ffn_up.weight": {64, 160},
				"blk.2.ffn_down.weight": {160, 64}, "blk.2.attn_norm.weight": {64}, "blk.2.ffn_norm.weight": {64},
			}
			seen := 0
			for _, tn := range in.Tensors {
				want, ok := shapes[tn.Name]
				if !ok {
					continue
				}
				seen++
				if !equal(tn.Shape, want) {
					t.Errorf("%s shape %v, want %v", tn.Name, tn.Shape, want)
				}
				if len(want) == 2 && tn.Type != wantType {
					t.Errorf("%s type %s, want %s", tn.Name, tn.Type, wantType)
				}
				if len(want) == 1 && tn.Type != "F32" {
					t.Errorf("norm %s type %s, want F32", tn.Name, tn.Type)
				}
			}
			if seen != len(shapes) || in.TensorCount != 2+3*9+1 {
				t.Fatalf("found %d of the expected tensors, %d in all", seen, in.TensorCount)
			}
			wantParams := uint64(2*64*259 + 64 + 3*(2*64+64*64*2+64*16*2+3*64*160))
			if in.Params != wantParams {
				t.Fatalf("params %d, want %d", in.Params, wantParams)
			}

			m, err := llama.LoadModel(path, llama.ModelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Params() != wantParams || m.KVHeads() != 2 || m.Layers() != 3 {
				t.Fatalf("llama.cpp sees %d params, %d layers, %d KV heads", m.Params(), m.Layers(), m.KVHeads())
			}
			toks, err := m.Tokenize("hello world", true, false)
			if err != nil {
				t.Fatal(err)
			}
			// BOS, then SentencePiece's "▁hello▁world" as byte tokens (id = 3 + byte).
			want := []int32{1}
			for _, b := range []byte("\u2581hello\u2581world") {
				want = append(want, 3+int32(b))
			}
			if !equal32(toks, want) {
				t.Fatalf("byte vocabulary tokenized %q as %v, want %v", "hello world", toks, want)
			}
			ctx, err := llama.NewContext(m, llama.ContextOptions{Context: 64, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer ctx.Close()
			st, err := llama.Generate(context.Background(), ctx, toks, llama.GenerateOptions{MaxTokens: 16}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.GeneratedTokens == 0 {
				t.Fatalf("generated nothing: %+v", st)
			}
			// The weights are random but finite: the logits must be too.
			ctx.Reset()
			if err := ctx.Decode([]llama.BatchToken{{Token: 1, Pos: 0, Logits: true}}); err != nil {
				t.Fatal(err)
			}
			for i, v := range ctx.Logits(0) {
				if v != v || v > 1e30 || v < -1e30 {
					t.Fatalf("logit %d is %v", i, v)
				}
			}
		})
	}
}

func TestVocabFromRealModel(t *testing.T) {
	base := shared.Path(t, "models/llama-2-tiny-random.gguf")
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, Config{Layers: 1, Embd: 32, Heads: 4, KVHeads: 4, FF: 64, Type: "q8_0", VocabFrom: base, TiedOutput: true}); err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(path, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.VocabSize() != 32000 {
		t.Fatalf("vocab %d, want the base's 32000", m.VocabSize())
	}
	toks, _ := m.Tokenize("Hello world", false, false)
	if !equal32(toks, []int32{15043, 3186}) {
		t.Fatalf("Hello world -> %v, want the Llama-2 ids [15043 3186]", toks)
	}
	f, _ := gguf.Open(path)
	if _, ok := f.Tensor("output.weight"); ok {
		t.Fatal("TiedOutput wrote output.weight")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Layers: 1, Embd: 48, Heads: 4, KVHeads: 4, FF: 64, Type: "q4_0"}, "multiples of 32"},
		{Config{Layers: 1, Embd: 64, Heads: 6, KVHeads: 3, FF: 64}, "not a multiple of heads"},
		{Config{Layers: 1, Embd: 64, Heads: 8, KVHeads: 3, FF: 64}, "not a multiple of kv-heads"},
		{Config{Layers: 1, Embd: 64, Heads: 4, KVHeads: 4, FF: 64, Type: "q5_k"}, "unknown weight type"},
		{Config{Layers: 0, Embd: 64, Heads: 4, KVHeads: 4, FF: 64}, "positive"},
	} {
		err := Write(filepath.Join(dir, "x.gguf"), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", c.cfg, err, c.want)
		}
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equal32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
