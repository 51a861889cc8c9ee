package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// sharedModel returns the path of a model in the shared folder, skipping
// the test loudly when it is absent.
func sharedModel(t testing.TB, name string) string {
	t.Helper()
	return shared.Path(t, filepath.Join("models", name))
}

func TestStories260K(t *testing.T) {
	path := sharedModel(t, "stories260K.gguf")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != path || f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
		t.Errorf("Path %q Version %d Alignment %d DataOffset %d", f.Path, f.Version, f.Alignment, f.DataOffset)
	}
	if arch := f.Architecture(); arch != "llama" {
		t.Errorf("Architecture() = %q, want llama", arch)
	}
	for key, want := range map[string]uint64{
		"llama.embedding_length":          64,
		"llama.block_count":               5,
		"llama.attention.head_count":      8,
		"llama.attention.head_count_kv":   4,
		"llama.feed_forward_length":       172,
		"llama.context_length":            2048,
		"tokenizer.ggml.bos_token_id":     1,
		"tokenizer.ggml.eos_token_id":     2,
		"tokenizer.ggml.unknown_token_id": 0,
	} {
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("Uint(%q) = %d, %v; want %d", key, got, ok, want)
		}
	}
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != 1e-5 {
		t.Errorf("rms epsilon = %v, %v", eps, ok)
	}
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		t.Errorf("tokenizer.ggml.model = %q, want llama", m)
	}
	tokens, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(tokens) != 512 || tokens[0] != "<unk>" || tokens[1] != "<s>" || tokens[2] != "</s>" {
		t.Errorf("tokens: %d, %v (first %q)", len(tokens), ok, tokens[:min(3, len(tokens))])
	}
	if scores, _ := f.Get("tokenizer.ggml.scores"); len(scores.([]float32)) != 512 {
		t.Errorf("scores: %T of %d", scores, len(scores.([]float32)))
	}
	if types, _ := f.Get("tokenizer.ggml.token_type"); len(types.([]int32)) != 512 {
		t.Errorf("token_type: %T of %d", types, len(types.([]int32)))
	}

	if len(f.Tensors) != 48 { // 3 + 9 per layer
		t.Errorf("%d tensors, want 48", len(f.Tensors))
	}
	for _, ti := range f.Tensors {
		if ti.Type != F32 {
			t.Errorf("tensor %s is %s, want F32", ti.Name, ti.Type)
		}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || !reflect.DeepEqual(emb.Dims, []uint64{64, 512}) || emb.Size() != 64*512*4 || emb.NumElements() != 64*512 {
		t.Errorf("token_embd.weight = %+v, %v", emb, ok)
	}
	if ti, ok := f.Tensor("blk.4.ffn_down.weight"); !ok || !reflect.DeepEqual(ti.Dims, []uint64{172, 64}) {
		t.Errorf("blk.4.ffn_down.weight = %+v, %v", ti, ok)
	}
	checkTensorData(t, f)
	checkReencode(t, f)
}

func TestLlama2TinyRandom(t *testing.T) {
	path := sharedModel(t, "llama-2-tiny-random.gguf")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "llama" || f.Version != 3 || f.Alignment != 32 {
		t.Errorf("arch %q version %d alignment %d", f.Architecture(), f.Version, f.Alignment)
	}
	if name, _ := f.String("general.name"); name != "LLaMA v2" {
		t.Errorf("general.name = %q", name)
	}
	for key, want := range map[string]uint64{
		"llama.embedding_length":        8,
		"llama.block_count":             1,
		"llama.feed_forward_length":     32,
		"llama.attention.head_count":    2,
		"llama.attention.head_count_kv": 2,
		"llama.rope.dimension_count":    4,
		"llama.context_length":          4096,
		"general.file_type":             1,
	} {
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("Uint(%q) = %d, %v; want %d", key, got, ok, want)
		}
	}
	ft, _ := f.Uint("general.file_type")
	if name := FileTypeName(uint32(ft)); name != "MOSTLY_F16" {
		t.Errorf("file type %s, want MOSTLY_F16", name)
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	if len(tokens) != 32000 || tokens[0] != "<unk>" || tokens[29871] != "▁" {
		t.Errorf("%d tokens", len(tokens))
	}
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		t.Errorf("tokenizer.ggml.model = %q", m)
	}
	if len(f.Tensors) != 12 {
		t.Errorf("%d tensors, want 12", len(f.Tensors))
	}
	// The weight matrices are F16; the norm vectors stay F32.
	for _, ti := range f.Tensors {
		want := F16
		if strings.HasSuffix(ti.Name, "norm.weight") {
			want = F32
		}
		if ti.Type != want {
			t.Errorf("tensor %s is %s, want %s", ti.Name, ti.Type, want)
		}
	}
	for name, dims := range map[string][]uint64{
		"token_embd.weight":     {8, 32000},
		"output.weight":         {8, 32000},
		"blk.0.ffn_down.weight": {32, 8},
		"blk.0.attn_q.weight":   {8, 8},
		"output_norm.weight":    {8},
	} {
		if ti, ok := f.Tensor(name); !ok || !reflect.DeepEqual(ti.Dims, dims) {
			t.Errorf("tensor %s = %+v, %v; want dims %v", name, ti, ok, dims)
		}
	}
	checkTensorData(t, f)
	checkReencode(t, f)
}

// checkTensorData checks that ReadTensorData returns the bytes at the
// tensor's place in the file, and that the tensors fill the data section as
// ggml lays it out.
func checkTensorData(t *testing.T, f *File) {
	t.Helper()
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(0)
	for _, ti := range f.Tensors {
		if ti.Offset != next {
			t.Errorf("tensor %s at offset %d, want %d", ti.Name, ti.Offset, next)
		}
		next = ti.Offset + ti.Size() + padding(ti.Size(), f.Alignment)
		data, err := f.ReadTensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		start := uint64(f.DataOffset) + ti.Offset
		if !bytes.Equal(data, raw[start:start+ti.Size()]) {
			t.Errorf("ReadTensorData(%s) differs from the file's bytes", ti.Name)
		}
	}
	if _, err := f.ReadTensorData("no.such.tensor"); err == nil || !strings.Contains(err.Error(), `"no.such.tensor"`) {
		t.Errorf("ReadTensorData of a missing tensor: %v", err)
	}
}

// checkReencode writes the file's metadata and data again with Write and
// expects the very same bytes: the writer lays files out as ggml does.
func checkReencode(t *testing.T, f *File) {
	t.Helper()
	var tensors []Tensor
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
	}
	out := filepath.Join(t.TempDir(), "copy.gguf")
	if err := Write(out, f.KV, tensors); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("re-encoding %s gives different bytes (%d vs %d)", f.Path, len(got), len(want))
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "model.gguf")
	_, err := Open(missing)
	if !errors.Is(err, os.ErrNotExist) || err.Error() != "open "+missing+": no such file or directory" {
		t.Errorf("Open(missing) = %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), dir+": is a directory") {
		t.Errorf("Open(dir) = %v", err)
	}
}

func TestReadTensorDataAfterTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.gguf")
	data := make([]byte, 64)
	if err := Write(path, nil, []Tensor{{Name: "a", Dims: []uint64{16}, Type: F32, Data: data}}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, f.DataOffset+10); err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadTensorData("a")
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), path+`: tensor "a" data`) {
		t.Errorf("ReadTensorData after truncation: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	f := &File{KV: []KV{
		{"u8", uint8(7)}, {"i8", int8(-7)}, {"i16", int16(300)}, {"u64.big", uint64(1 << 63)},
		{"i64", int64(-5)}, {"f32", float32(0.5)}, {"f64", 2.5}, {"s", "x"}, {"ss", []string{"a"}},
		{"b", true},
	}, Tensors: []TensorInfo{{Name: "t", Dims: []uint64{2, 3}, Type: F16}}}
	for _, c := range []struct {
		key       string
		u         uint64
		uok       bool
		i         int64
		iok       bool
		fl        float64
		fok       bool
		isString  bool
		isStrings bool
	}{
		{key: "u8", u: 7, uok: true, i: 7, iok: true, fl: 7, fok: true},
		{key: "i8", i: -7, iok: true, fl: -7, fok: true},
		{key: "i16", u: 300, uok: true, i: 300, iok: true, fl: 300, fok: true},
		{key: "u64.big", u: 1 << 63, uok: true, fl: 1 << 63, fok: true},
		{key: "i64", i: -5, iok: true, fl: -5, fok: true},
		{key: "f32", fl: 0.5, fok: true},
		{key: "f64", fl: 2.5, fok: true},
		{key: "s", isString: true},
		{key: "ss", isStrings: true},
		{key: "b"},
		{key: "missing"},
	} {
		if u, ok := f.Uint(c.key); u != c.u || ok != c.uok {
			t.Errorf("Uint(%q) = %d, %v", c.key, u, ok)
		}
		if i, ok := f.Int(c.key); i != c.i || ok != c.iok {
			t.Errorf("Int(%q) = %d, %v", c.key, i, ok)
		}
		if fl, ok := f.Float(c.key); fl != c.fl || ok != c.fok {
			t.Errorf("Float(%q) = %v, %v", c.key, fl, ok)
		}
		if _, ok := f.String(c.key); ok != c.isString {
			t.Errorf("String(%q) ok = %v", c.key, ok)
		}
		if _, ok := f.Strings(c.key); ok != c.isStrings {
			t.Errorf("Strings(%q) ok = %v", c.key, ok)
		}
	}
	if f.Architecture() != "" {
		t.Errorf("Architecture() = %q, want empty", f.Architecture())
	}
	// A File built by hand has no index; Tensor still finds tensors.
	if ti, ok := f.Tensor("t"); !ok || ti.NumElements() != 6 || ti.Size() != 12 {
		t.Errorf("Tensor(t) = %+v, %v", ti, ok)
	}
	if _, ok := f.Tensor("u"); ok {
		t.Error("Tensor(u) found a tensor")
	}
}
