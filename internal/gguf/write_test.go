package gguf

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// allValues holds every value type, as scalars and arrays, with edge cases.
func allValues() []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"test.uint8", uint8(255)},
		{"test.int8", int8(-128)},
		{"test.uint16", uint16(65535)},
		{"test.int16", int16(-32768)},
		{"test.uint32", uint32(4294967295)},
		{"test.int32", int32(-2147483648)},
		{"test.float32", float32(3.25)},
		{"test.bool.true", true},
		{"test.bool.false", false},
		{"test.string", "Grüße, 世界 🦙\n\"quoted\"\x00nul"},
		{"test.string.empty", ""},
		{"test.uint64", uint64(math.MaxUint64)},
		{"test.int64", int64(math.MinInt64)},
		{"test.float64", math.Pi},
		{"test.float32.inf", float32(math.Inf(-1))},
		{"test.array.uint8", []uint8{0, 1, 255}},
		{"test.array.int8", []int8{-128, 0, 127}},
		{"test.array.uint16", []uint16{0, 65535}},
		{"test.array.int16", []int16{-32768, 32767}},
		{"test.array.uint32", []uint32{0, 1, 4294967295}},
		{"test.array.int32", []int32{-1, 0, 1}},
		{"test.array.float32", []float32{1.5, -2, float32(math.Inf(1))}},
		{"test.array.bool", []bool{true, false, true}},
		{"test.array.string", []string{"a", "", "ünïcödé", "<0x0A>"}},
		{"test.array.uint64", []uint64{math.MaxUint64, 0}},
		{"test.array.int64", []int64{math.MinInt64, math.MaxInt64}},
		{"test.array.float64", []float64{math.SmallestNonzeroFloat64, -1e300}},
		{"test.array.empty", []int32{}},
		{"test.array.empty.string", []string{}},
		{"test.array.nested", []any{[]int32{1, 2}, []string{"x", "y"}, []any{[]bool{true}, []float64{}}, []any{}}},
		{"test.array.nested.empty", []any{}},
		{"test.array.large", make([]float32, 100000)}, // more than one buffer
	}
}

// testTensors returns tensors of several types with 1 to 4 dimensions and
// random data of the right size.
func testTensors() []Tensor {
	rng := rand.New(rand.NewPCG(1, 2))
	tensors := []Tensor{
		{Name: "vec.f32", Dims: []uint64{3}, Type: F32},
		{Name: "mat.f16", Dims: []uint64{5, 3}, Type: F16},
		{Name: "mat.q8_0", Dims: []uint64{64, 2}, Type: Q8_0},
		{Name: "cube.q4_0", Dims: []uint64{32, 1, 3}, Type: Q4_0},
		{Name: "hyper.q4_k", Dims: []uint64{256, 2, 1, 2}, Type: Q4_K},
		{Name: "hyper.f32", Dims: []uint64{2, 3, 4, 5}, Type: F32},
		{Name: "empty.f32", Dims: []uint64{0, 4}, Type: F32},
		{Name: strings.Repeat("n", MaxTensorNameLen), Dims: []uint64{1}, Type: F16},
	}
	for i := range tensors {
		tensors[i].Data = make([]byte, tensorSizeOrZero(tensors[i]))
		for j := range tensors[i].Data {
			tensors[i].Data[j] = byte(rng.Uint32())
		}
	}
	return tensors
}

func tensorSizeOrZero(t Tensor) uint64 {
	return TensorInfo{Dims: t.Dims, Type: t.Type}.Size()
}

func TestRoundTrip(t *testing.T) {
	for _, alignment := range []uint32{0, 64, 1} { // 0: no general.alignment key
		t.Run(fmt.Sprint("alignment=", alignment), func(t *testing.T) {
			kv := allValues()
			want := uint64(DefaultAlignment)
			if alignment != 0 {
				kv = append(kv[:3:3], append([]KV{{KeyAlignment, alignment}}, kv[3:]...)...)
				want = uint64(alignment)
			}
			tensors := testTensors()
			path := filepath.Join(t.TempDir(), "round trip.gguf")
			if err := Write(path, kv, tensors); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != Version || f.Alignment != want || f.DataOffset%int64(want) != 0 {
				t.Errorf("version %d alignment %d (want %d) data offset %d", f.Version, f.Alignment, want, f.DataOffset)
			}
			if len(f.KV) != len(kv) {
				t.Fatalf("%d keys read back, %d written", len(f.KV), len(kv))
			}
			for i := range kv {
				if !reflect.DeepEqual(f.KV[i], kv[i]) {
					t.Errorf("key %d: read %#v, wrote %#v", i, f.KV[i], kv[i])
				}
			}
			if len(f.Tensors) != len(tensors) {
				t.Fatalf("%d tensors read back, %d written", len(f.Tensors), len(tensors))
			}
			end := f.DataOffset
			for i, w := range tensors {
				ti := f.Tensors[i]
				if ti.Name != w.Name || !reflect.DeepEqual(ti.Dims, w.Dims) || ti.Type != w.Type || ti.Size() != uint64(len(w.Data)) {
					t.Errorf("tensor %d: read %+v, wrote %s %v %s", i, ti, w.Name, w.Dims, w.Type)
				}
				if ti.Offset%want != 0 {
					t.Errorf("tensor %s offset %d is not a multiple of %d", ti.Name, ti.Offset, want)
				}
				data, err := f.ReadTensorData(w.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, w.Data) {
					t.Errorf("tensor %s data differs", w.Name)
				}
				end = f.DataOffset + int64(ti.Offset) + int64(len(data))
			}
			// The file ends with the last tensor padded to the alignment, as ggml writes it.
			if f.FileSize != end+int64(padding(uint64(end), want)) {
				t.Errorf("file size %d, last tensor ends at %d", f.FileSize, end)
			}

			// Encode writes the same bytes as Write.
			var buf bytes.Buffer
			if err := Encode(&buf, kv, tensors); err != nil {
				t.Fatal(err)
			}
			disk, _ := os.ReadFile(path)
			if !bytes.Equal(buf.Bytes(), disk) {
				t.Error("Encode and Write produce different bytes")
			}
			g, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "memory")
			if err != nil || !reflect.DeepEqual(g.KV, f.KV) || !reflect.DeepEqual(g.Tensors, f.Tensors) {
				t.Errorf("Read from memory differs from Open: %v", err)
			}
		})
	}
}

func TestWriteEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.gguf")
	if err := Write(path, nil, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.KV) != 0 || len(f.Tensors) != 0 || f.FileSize != 32 {
		t.Errorf("empty file: %+v", f)
	}
}

func TestWriteRejects(t *testing.T) {
	good := func() ([]KV, []Tensor) {
		return []KV{{"general.architecture", "llama"}, {"a.b", uint32(1)}},
			[]Tensor{{Name: "w", Dims: []uint64{4, 2}, Type: F16, Data: make([]byte, 16)}, {Name: "v", Dims: []uint64{32}, Type: Q8_0, Data: make([]byte, 34)}}
	}
	cases := []struct {
		name   string
		change func(kv []KV, ts []Tensor) ([]KV, []Tensor)
		want   []string // all in the message
	}{
		{"short data", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[0].Data = ts[0].Data[:15]
			return kv, ts
		}, []string{`tensor "w"`, "15 bytes", "F16 [4 2] takes 16"}},
		{"long data", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Data = make([]byte, 35)
			return kv, ts
		}, []string{`tensor "v"`, "35 bytes", "takes 34"}},
		{"duplicate tensor", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return kv, append(ts, ts[0])
		}, []string{`duplicate tensor name "w"`}},
		{"duplicate key", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"a.b", uint32(2)}), ts
		}, []string{`duplicate key "a.b"`, "keys 2 and 3"}},
		{"int value", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"n", 5}), ts
		}, []string{`key "n"`, "unsupported value type int", "int32"}},
		{"map value", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"m", map[string]int{}}), ts
		}, []string{`key "m"`, "map[string]int"}},
		{"nil value", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"nil", nil}), ts
		}, []string{`key "nil"`, "nil"}},
		{"scalar in []any", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"nested", []any{[]int32{1}, "x"}}), ts
		}, []string{`key "nested"`, "element 1", "[]string"}},
		{"bad type in []any", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"nested", []any{[]any{[]int{1}}}}), ts
		}, []string{`key "nested"`, "element 0", "[]int"}},
		{"empty key", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"", "x"}), ts
		}, []string{"key 3 of 3 is empty"}},
		{"alignment not uint32", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{KeyAlignment, uint64(32)}), ts
		}, []string{`general.alignment`, "uint32", "uint64"}},
		{"alignment not power of 2", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{KeyAlignment, uint32(48)}), ts
		}, []string{`general.alignment`, "48", "power of 2"}},
		{"5 dims", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[0].Dims = []uint64{1, 1, 4, 2, 1}
			return kv, ts
		}, []string{`tensor "w"`, "5 dimensions", "1 to 4"}},
		{"0 dims", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[0].Dims = nil
			return kv, ts
		}, []string{`tensor "w"`, "0 dimensions"}},
		{"unknown type", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Type = 99
			return kv, ts
		}, []string{`tensor "v"`, "unknown type 99"}},
		{"removed type", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Type = 31
			return kv, ts
		}, []string{`tensor "v"`, "Q4_0_4_4"}},
		{"row not a multiple of the block", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Dims = []uint64{16, 2}
			return kv, ts
		}, []string{`tensor "v"`, "not a multiple of the Q8_0 block size (32)"}},
		{"too many elements", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[0].Dims = []uint64{1 << 32, 1 << 32}
			return kv, ts
		}, []string{`tensor "w"`, "more elements"}},
		{"empty name", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Name = ""
			return kv, ts
		}, []string{"tensor 2 of 2 has no name"}},
		{"long name", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			ts[1].Name = strings.Repeat("x", 64)
			return kv, ts
		}, []string{`tensor "xxxx`, "64 bytes", "at most 63"}},
		{"arrays too deep", func(kv []KV, ts []Tensor) ([]KV, []Tensor) {
			return append(kv, KV{"deep", nest(maxArrayDepth + 1)}), ts
		}, []string{`key "deep"`, "nest more than 32 deep"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "model.gguf")
			if err := os.WriteFile(path, []byte("old content"), 0o600); err != nil {
				t.Fatal(err)
			}
			kv, ts := c.change(good())
			err := Write(path, kv, ts)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			for _, w := range append(c.want, "write "+path+": ") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if err := Encode(&bytes.Buffer{}, kv, ts); err == nil || !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Errorf("Encode: %v", err)
			}
			checkUntouched(t, dir, path)
		})
	}
}

// nest returns arrays nested depth deep.
func nest(depth int) any {
	var v any = []int32{1}
	for range depth - 1 {
		v = []any{v}
	}
	return v
}

func TestNestingLimit(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, []KV{{"deep", nest(maxArrayDepth)}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "deep.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV[0].Value, nest(maxArrayDepth)) {
		t.Error("deeply nested array differs")
	}
}

// checkUntouched checks that path still holds "old content" and that dir
// holds no other file.
func checkUntouched(t *testing.T, dir, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != "old content" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if filepath.Join(dir, e.Name()) != path {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(path, []byte("old content"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []KV{{"k", "v"}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := f.String("k"); s != "v" {
		t.Errorf("k = %q", s)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the folder, want 1", len(entries))
	}

	// A new file in the current folder (a bare name).
	t.Chdir(dir)
	if err := Write("new.gguf", nil, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat("new.gguf"); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v, %v", st, err)
	}
}

func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	// The folder does not exist.
	missing := filepath.Join(dir, "no", "model.gguf")
	if err := Write(missing, nil, nil); err == nil || !strings.Contains(err.Error(), "write "+missing) {
		t.Errorf("Write into a missing folder: %v", err)
	}
	// path is a folder: the rename fails, and the temporary file goes.
	sub := filepath.Join(dir, "model.gguf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, nil, nil); err == nil || !strings.Contains(err.Error(), "write "+sub) {
		t.Errorf("Write over a folder: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries left in the folder, want 1", len(entries))
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, os.ErrClosed
	}
	w.n -= len(p)
	return len(p), nil
}

func TestEncodeWriteError(t *testing.T) {
	kv, tensors := allValues(), testTensors()
	var buf bytes.Buffer
	if err := Encode(&buf, kv, tensors); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 100, 70000, buf.Len() - 1} {
		if err := Encode(&failWriter{n: n}, kv, tensors); err == nil || !strings.Contains(err.Error(), os.ErrClosed.Error()) {
			t.Errorf("Encode into a writer failing after %d bytes: %v", n, err)
		}
	}
}
