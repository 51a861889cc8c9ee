package adapters

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/llamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// logitsOf decodes tokens in llama.cpp (F32 KV cache) and returns the last
// position's logits.
func logitsOf(t *testing.T, model, adapter string, tokens []int32) []float32 {
	t.Helper()
	logits := llamatest.Logits(t, model, adapter, tokens)
	return logits[len(logits)-1]
}

// TestMergeEqualsAdapter: a merged model's logits equal the base's with
// the adapter applied at run time.
func TestMergeEqualsAdapter(t *testing.T) {
	base := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 8))
	l := &LoRA{Architecture: "llama", Alpha: 8}
	for b := 0; b < 5; b++ {
		for _, w := range []struct {
			name      string
			nIn, nOut int
		}{{"attn_q", 64, 64}, {"attn_v", 64, 32}, {"ffn_down", 172, 64}} {
			l.Pairs = append(l.Pairs, randomPair(rng, "blk."+string(rune('0'+b))+"."+w.name+".weight", w.nIn, w.nOut, 4, 0.3))
		}
	}
	adapter := filepath.Join(dir, "a.gguf")
	if err := Write(adapter, l); err != nil {
		t.Fatal(err)
	}
	m, _ := llama.LoadModel(base, llama.ModelOptions{VocabOnly: true})
	tokens, _ := m.Tokenize("Once upon a time there was a dog", true, false)
	m.Close()
	want := logitsOf(t, base, adapter, tokens)
	plain := logitsOf(t, base, "", tokens)
	for _, c := range []struct {
		typ string
		tol float64
	}{{"f32", 1e-3}, {"f16", 1e-1}} { // F16 rounds the weights (and ggml the activations): ~0.3% of a 20-logit effect
		merged := filepath.Join(dir, "merged-"+c.typ+".gguf")
		if _, err := Merge(base, adapter, merged, MergeOptions{Type: c.typ}); err != nil {
			t.Fatal(err)
		}
		got := logitsOf(t, merged, "", tokens)
		d, moved := 0.0, 0.0
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
			moved = math.Max(moved, math.Abs(float64(want[i]-plain[i])))
		}
		t.Logf("%s: max |merged - base+adapter| = %.2e (the adapter moves logits by %.2f)", c.typ, d, moved)
		if moved < 0.1 || d > c.tol {
			t.Fatalf("%s: merged logits differ by %g (tolerance %g); adapter effect %g", c.typ, d, c.tol, moved)
		}
	}
	if _, err := Merge(base, adapter, filepath.Join(dir, "x.gguf"), MergeOptions{Type: "q4_k"}); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Fatalf("bad type: %v", err)
	}
}

// TestMergeQuantizes: llama.cpp's quantizer writes the merged model in the
// type asked for (the base's own by default), with the base's metadata,
// vocabulary and chat template; the result loads in llama.cpp and stays
// close to the base with the adapter; a type the shapes cannot hold fails
// and leaves nothing behind.
func TestMergeQuantizes(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.gguf")
	if err := testmodel.Write(base, testmodel.Config{Layers: 2, Embd: 256, Heads: 4, KVHeads: 2, FF: 512, ChatML: true, Type: "f16", Seed: 5}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	l := &LoRA{Architecture: "llama", Alpha: 8}
	for b := 0; b < 2; b++ {
		for _, w := range []struct {
			name      string
			nIn, nOut int
		}{{"attn_q", 256, 256}, {"attn_v", 256, 128}, {"ffn_down", 512, 256}} {
			l.Pairs = append(l.Pairs, randomPair(rng, "blk."+string(rune('0'+b))+"."+w.name+".weight", w.nIn, w.nOut, 4, 0.3))
		}
	}
	adapter := filepath.Join(dir, "a.gguf")
	if err := Write(adapter, l); err != nil {
		t.Fatal(err)
	}
	bf, err := gguf.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(base, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := m.Tokenize("<|im_start|>user\nhello there<|im_end|>", true, true)
	baseTemplate := m.ChatTemplate()
	m.Close()
	want := logitsOf(t, base, adapter, tokens)
	plain := logitsOf(t, base, "", tokens)
	moved := 0.0
	for i := range want {
		moved = math.Max(moved, math.Abs(float64(want[i]-plain[i])))
	}
	for _, c := range []struct {
		typ    string
		wantFT llama.FileType
		// types every 2-D weight may have
		types []ggml.Type
		// tolerance of the logits against base + adapter (0: only logged;
		// 4-bit weights of a random model move them as much as the adapter)
		tol float64
	}{
		{"", llama.FileTypeF16, []ggml.Type{ggml.TypeF16}, 0.05},
		{"q8_0", llama.FileTypeQ8_0, []ggml.Type{ggml.TypeQ8_0}, 0.5},
		{"Q4_K_M", llama.FileTypeQ4_K_M, []ggml.Type{ggml.Type(12), ggml.Type(14)}, 0}, // Q4_K, Q6_K: llama.cpp's mix
	} {
		out := filepath.Join(dir, "merged-"+c.typ+".gguf")
		ft, err := Merge(base, adapter, out, MergeOptions{Type: c.typ})
		if err != nil {
			t.Fatalf("%q: %v", c.typ, err)
		}
		if ft != c.wantFT {
			t.Fatalf("%q: wrote %s, want %s", c.typ, ft, c.wantFT)
		}
		mf, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := mf.Uint("general.file_type"); llama.FileType(v) != c.wantFT {
			t.Fatalf("%q: general.file_type = %d, want %d", c.typ, v, c.wantFT)
		}
		seen := map[ggml.Type]int{}
		for _, ti := range mf.Tensors {
			if len(ti.Dims) != 2 {
				if ggml.Type(ti.Type) != ggml.TypeF32 {
					t.Fatalf("%q: %s (1-D) is %s, want f32", c.typ, ti.Name, ggml.Type(ti.Type))
				}
				continue
			}
			tt := ggml.Type(ti.Type)
			if !slices.Contains(c.types, tt) {
				t.Fatalf("%q: %s is %s, want one of %v", c.typ, ti.Name, tt, c.types)
			}
			seen[tt]++
		}
		if len(seen) != len(c.types) {
			t.Fatalf("%q: 2-D weight types %v, want all of %v", c.typ, seen, c.types)
		}
		for _, kv := range bf.KV {
			if kv.Key == "general.file_type" || kv.Key == "general.alignment" {
				continue
			}
			got, ok := mf.Get(kv.Key)
			if !ok || !reflect.DeepEqual(got, kv.Value) {
				t.Fatalf("%q: %s is %v in the merged model, %v in the base", c.typ, kv.Key, got, kv.Value)
			}
		}
		mm, err := llama.LoadModel(out, llama.ModelOptions{VocabOnly: true})
		if err != nil {
			t.Fatalf("%q: llama.cpp does not load the merged model: %v", c.typ, err)
		}
		if mm.ChatTemplate() != baseTemplate || mm.ChatTemplate() == "" {
			t.Fatalf("%q: chat template %q, base's %q", c.typ, mm.ChatTemplate(), baseTemplate)
		}
		mm.Close()
		got := logitsOf(t, out, "", tokens)
		d := 0.0
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("%q (%s): %d bytes; max |merged - base+adapter| = %.3f (the adapter moves logits by %.3f); types %v", c.typ, ft, mf.FileSize, d, moved, seen)
		if c.tol > 0 && d > c.tol {
			t.Fatalf("%q: merged logits differ from base+adapter by %.3f (tolerance %g; the adapter moves them by %.3f)", c.typ, d, c.tol, moved)
		}
	}

	// stories260K's 172-wide rows cannot be Q8_0 blocks: llama.cpp refuses,
	// and neither the output nor a temporary file is left.
	small := t.TempDir()
	sl := &LoRA{Architecture: "llama", Alpha: 8, Pairs: []Pair{randomPair(rng, "blk.0.attn_q.weight", 64, 64, 4, 0.3)}}
	sa := filepath.Join(small, "a.gguf")
	if err := Write(sa, sl); err != nil {
		t.Fatal(err)
	}
	_, err = Merge(shared.Path(t, "models/stories260K.gguf"), sa, filepath.Join(small, "m.gguf"), MergeOptions{Type: "q8_0"})
	if err == nil {
		t.Fatal("a Q8_0 merge of 172-wide rows succeeded")
	}
	t.Logf("refused: %v", err)
	if entries, _ := os.ReadDir(small); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("a failed merge left %v", names)
	}
}
