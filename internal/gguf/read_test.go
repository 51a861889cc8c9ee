package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// raw builds GGUF bytes by hand, for files the writer would refuse to make.
type raw struct{ b []byte }

func header(version uint32, nTensors, nKV uint64) *raw {
	return (&raw{b: []byte("GGUF")}).u32(version).u64(nTensors).u64(nKV)
}

func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) byte(v byte) *raw  { r.b = append(r.b, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }

// kv appends a key with a uint32 value.
func (r *raw) kv(key string, v uint32) *raw { return r.str(key).u32(uint32(TypeUint32)).u32(v) }

// tensor appends a tensor info.
func (r *raw) tensor(name string, typ TensorType, offset uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

// data pads to 32 and appends n bytes of tensor data.
func (r *raw) data(n int) *raw {
	r.b = append(r.b, make([]byte, int(padding(uint64(len(r.b)), 32))+n)...)
	return r
}

func readBytes(b []byte, name string) (*File, error) {
	return Read(bytes.NewReader(b), int64(len(b)), name)
}

func TestReadErrors(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want string // the whole message, or a part of it after "..."
	}{
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00"), `model.gguf: not a GGUF file (starts with "PK\x03\x04", expected "GGUF"): it is a ZIP archive`},
		{"lfs", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"), `...Git LFS pointer`},
		{"html", []byte("<!DOCTYPE html><html><body>Not found</body></html>"), `...an HTML page`},
		{"safetensors", append([]byte{0x20, 0, 0, 0, 0, 0, 0, 0}, `{"a":{"dtype":"F32"}}`...), `...safetensors`},
		{"ggjt", []byte("tjgg\x01\x00\x00\x00more bytes"), `...formats that came before GGUF`},
		{"empty", nil, `model.gguf: empty file (0 bytes), not a GGUF file`},
		{"short magic", []byte("GG"), `model.gguf: truncated: file ends at byte 2 while reading the header: the file is incomplete (interrupted download or copy?)`},
		{"short other", []byte("ab"), `model.gguf: not a GGUF file (starts with "ab", expected "GGUF")`},
		{"no version", []byte("GGUF\x03"), `model.gguf: truncated: file ends at byte 5 while reading the header: the file is incomplete (interrupted download or copy?)`},
		{"version 1", header(1, 0, 0).b, `model.gguf: unsupported GGUF version 1 (finetune reads versions 2 and 3): version 1 is obsolete; convert the model again with a current llama.cpp`},
		{"version 4", header(4, 0, 0).b, `model.gguf: unsupported GGUF version 4 (finetune reads versions 2 and 3)`},
		{"big-endian", header(0x03000000, 0, 0).b, `...the file looks big-endian`},
		{"unknown value type", header(3, 0, 1).str("general.foo").u32(77).u32(0).b,
			`model.gguf: key 1 of 1 ("general.foo"): unknown value type 77 at byte 43`},
		{"unknown element type", header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(13).u64(1).u32(0).b,
			`model.gguf: key 1 of 1 ("k"): array of unknown value type 13 at byte 37`},
		{"truncated key", header(3, 0, 3).kv("a", 1).str("tokenizer.ggml.tokens").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(2).str("hello").str("world").b[:105],
			`model.gguf: truncated: file ends at byte 105 while reading key 2 of 3 ("tokenizer.ggml.tokens"): the file is incomplete (interrupted download or copy?)`},
		{"duplicate key", header(3, 0, 2).kv("a", 1).kv("a", 2).b, `model.gguf: key 2 of 2 ("a"): duplicate key (key 1 has the same name)`},
		{"alignment type", header(3, 0, 2).kv("a", 1).str(KeyAlignment).u32(uint32(TypeUint64)).u64(32).b,
			`model.gguf: key 2 of 2 ("general.alignment"): the alignment must be a UINT32, not UINT64`},
		{"alignment zero", header(3, 0, 1).kv(KeyAlignment, 0).b, `...the alignment 0 is not a power of 2`},
		{"alignment 48", header(3, 0, 1).kv(KeyAlignment, 48).b, `...the alignment 48 is not a power of 2`},
		{"unknown tensor type", header(3, 1, 0).tensor("blk.0.attn_q.weight", 99, 0, 32).data(128).b,
			`model.gguf: tensor 1 of 1 ("blk.0.attn_q.weight"): unknown type 99`},
		{"removed tensor type", header(3, 1, 0).tensor("w", 31, 0, 32).data(128).b,
			`model.gguf: tensor 1 of 1 ("w"): type 31 (Q4_0_4_4, which ggml no longer supports; convert the model again with a current llama.cpp)`},
		{"5 dims", header(3, 1, 0).tensor("w", F32, 0, 1, 1, 1, 1, 1).data(4).b, `model.gguf: tensor 1 of 1 ("w"): 5 dimensions; ggml allows at most 4`},
		{"long name", header(3, 1, 0).tensor(strings.Repeat("n", 64), F32, 0, 1).data(4).b, `...the name is 64 bytes long; ggml allows at most 63`},
		{"block", header(3, 1, 0).tensor("w", Q4_0, 0, 16, 2).data(64).b,
			`model.gguf: tensor 1 of 1 ("w"): shape [16 2] does not fit type Q4_0: a row of 16 elements is not a multiple of the Q4_0 block size (32)`},
		{"huge shape", header(3, 1, 0).tensor("w", F32, 0, 1<<40, 1<<40).b, `...shape [1099511627776 1099511627776] has more elements than ggml can address`},
		{"negative dim", header(3, 1, 0).tensor("w", F32, 0, 1<<63).b, `...shape [9223372036854775808] has more elements than ggml can address`},
		{"unaligned", header(3, 1, 0).tensor("w", F32, 4, 4).data(64).b, `model.gguf: tensor 1 of 1 ("w"): data offset 4 is not a multiple of the alignment (32)`},
		{"duplicate tensor", header(3, 2, 0).tensor("w", F32, 0, 4).tensor("w", F32, 32, 4).data(64).b,
			`model.gguf: tensor 2 of 2 ("w"): duplicate tensor name (tensor 1 has the same name)`},
		{"past end", header(3, 2, 0).tensor("a", F32, 0, 8).tensor("blk.0.attn_q.weight", F32, 32, 1024).data(100).b,
			`model.gguf: tensor "blk.0.attn_q.weight" data [160, 4256) (4096 bytes) lies past the end of the file (228 bytes): the file is truncated (1 of 2 tensors are cut off; interrupted download or copy?)`},
		{"offset past end", header(3, 1, 0).tensor("a", F32, 1<<63+32, 8).data(32).b,
			`model.gguf: tensor "a" data [9223372036854775904, 9223372036854775936) (32 bytes) lies past the end of the file (96 bytes): the file is truncated`},
		{"offset overflow", header(3, 1, 0).tensor("a", F32, 1<<64-32, 8).data(32).b,
			`model.gguf: tensor "a" data offset 18446744073709551584 lies past the end of the file (96 bytes): the file is truncated`},
		{"overlap", header(3, 2, 0).tensor("a", F32, 0, 16).tensor("b", F32, 32, 8).data(64).b,
			`model.gguf: tensor "b" data [128, 160) overlaps tensor "a" data [96, 160): the file is corrupt`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(c.file, "model.gguf")
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %T %v, want a *FormatError", err, err)
			}
			msg := err.Error()
			if want, ok := strings.CutPrefix(c.want, "..."); ok {
				if !strings.HasPrefix(msg, "model.gguf: ") || !strings.Contains(msg, want) {
					t.Errorf("error\n%s\ndoes not contain\n%s", msg, want)
				}
			} else if !strings.HasPrefix(msg, c.want) {
				t.Errorf("error\n%s\nwant\n%s", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error has several lines: %q", msg)
			}
		})
	}
}

func TestReadAccepts(t *testing.T) {
	// Version 2 files read like version 3 ones.
	var buf bytes.Buffer
	if err := Encode(&buf, []KV{{"k", "v"}}, []Tensor{{Name: "w", Dims: []uint64{2}, Type: F32, Data: make([]byte, 8)}}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[4:], 2)
	f, err := readBytes(b, "v2.gguf")
	if err != nil || f.Version != 2 {
		t.Fatalf("version 2: %v", err)
	}

	// Converters write scalars with no dimensions; ggml reads them as 1 element.
	f, err = readBytes(header(3, 1, 0).tensor("scale", F32, 0).data(4).b, "scalar.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if ti := f.Tensors[0]; len(ti.Dims) != 0 || ti.NumElements() != 1 || ti.Size() != 4 {
		t.Errorf("scalar tensor %+v", ti)
	}

	// A tensor with no elements may sit at the very end; bool bytes other
	// than 0 and 1 read as true, as ggml reads them.
	f, err = readBytes(header(3, 1, 1).str("b").u32(uint32(TypeBool)).byte(2).tensor("e", F16, 0, 0, 8).data(0).b, "empty.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("b"); v != true {
		t.Errorf("bool byte 2 read as %v", v)
	}
}

// TestHugeCounts checks that counts and lengths the file cannot hold fail at
// once, without allocating for them.
func TestHugeCounts(t *testing.T) {
	const huge = 1 << 60
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"tensor count", header(3, huge, 0).b, "the header claims 1152921504606846976 tensors, but the 0 bytes after it could hold at most 0: the file is truncated or corrupt"},
		{"kv count", header(3, 0, huge).data(100).b, "the header claims 1152921504606846976 key/values, but the 108 bytes after it could hold at most 8"},
		{"key length", header(3, 0, 1).u64(huge).data(100).b, "key 1 of 1: key length 1152921504606846976 at byte 24 runs past the end of the file"},
		{"string length", header(3, 0, 1).str("s").u32(uint32(TypeString)).u64(huge).data(100).b, `key 1 of 1 ("s"): string length 1152921504606846976 at byte 37 runs past`},
		{"uint8 array", header(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeUint8)).u64(huge).data(100).b, `key 1 of 1 ("a"): array at byte 37 claims 1152921504606846976 UINT8 elements (at least 1 bytes each), but only`},
		{"float64 array", header(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeFloat64)).u64(huge).data(100).b, `claims 1152921504606846976 FLOAT64 elements (at least 8 bytes each)`},
		{"string array", header(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(huge).data(100).b, `claims 1152921504606846976 STRING elements`},
		{"nested array", header(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeArray)).u64(1).u32(uint32(TypeInt32)).u64(huge).data(100).b, `claims 1152921504606846976 INT32 elements`},
		{"tensor name", header(3, 1, 0).u64(huge).data(100).b, "tensor 1 of 1: name length 1152921504606846976 at byte 24 runs past"},
		{"string array lengths", header(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(2).u64(0).u64(huge).data(100).b, `key 1 of 1 ("a"): string length 1152921504606846976 at byte 57`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := readBytes(c.file, "huge.gguf")
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "huge.gguf: ") {
				t.Errorf("error %v\nwant a FormatError containing %q", err, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes", alloc)
			}
			if elapsed > 100*time.Millisecond {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

// errReaderAt fails every read.
type errReaderAt struct{}

func (errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestReaderErrors(t *testing.T) {
	_, err := Read(errReaderAt{}, 100, "model.gguf")
	var fe *FormatError
	if err == nil || errors.As(err, &fe) || !strings.Contains(err.Error(), "model.gguf") || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("I/O error: %v", err)
	}
	// A reader holding less than the size given reads as a truncated file.
	b := header(3, 0, 1).str("key").u32(uint32(TypeUint32)).u32(7).b
	_, err = Read(bytes.NewReader(b[:40]), int64(len(b)), "model.gguf")
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `model.gguf: truncated: file ends at byte 40 while reading key 1 of 1 ("key")`) {
		t.Errorf("short reader: %v", err)
	}
	if _, err := Read(bytes.NewReader(nil), -1, "model.gguf"); !errors.As(err, &fe) {
		t.Errorf("negative size: %v", err)
	}
}

// stories reads the real model into memory, with the end of its last tensor.
func stories(t testing.TB) ([]byte, *File) {
	path := sharedModel(t, "stories260K.gguf")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := readBytes(b, "stories260K.gguf")
	if err != nil {
		t.Fatal(err)
	}
	return b, f
}

func TestTruncatedModel(t *testing.T) {
	b, f := stories(t)
	var lastEnd int64
	cuts := []int64{f.DataOffset - 1, f.DataOffset, f.DataOffset + 1}
	for _, ti := range f.Tensors {
		end := f.DataOffset + int64(ti.Offset) + int64(ti.Size())
		lastEnd = max(lastEnd, end)
		cuts = append(cuts, end-1, end, end+1)
	}
	for cut := range int64(4096) {
		cuts = append(cuts, cut)
	}
	for i := range int64(200) {
		cuts = append(cuts, 4096+i*(int64(len(b))-4096)/200)
	}
	for _, cut := range cuts {
		if cut < 0 || cut > int64(len(b)) {
			continue
		}
		g, err := Read(bytes.NewReader(b[:cut]), cut, "stories260K.gguf")
		if cut >= lastEnd {
			if err != nil {
				t.Errorf("cut at %d after the last tensor: %v", cut, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("cut at %d: read %d tensors without error", cut, len(g.Tensors))
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("cut at %d: %T %v", cut, err, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "stories260K.gguf: ") || !strings.Contains(msg, "truncated") && cut > 0 {
			t.Fatalf("cut at %d: %s", cut, msg)
		}
	}
}

func TestCorruptedModel(t *testing.T) {
	b, _ := stories(t)
	c := bytes.Clone(b)
	n := 0
	for i := range 2048 {
		for _, v := range []byte{0x00, 0xFF, b[i] ^ 0x01, b[i] ^ 0x80} {
			c[i] = v
			f, err := readBytes(c, "stories260K.gguf")
			var fe *FormatError
			switch {
			case err == nil:
				n++
				if len(f.Tensors) == 0 && len(f.KV) == 0 {
					t.Errorf("byte %d = %#x: read an empty file", i, v)
				}
			case !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "stories260K.gguf: "):
				t.Fatalf("byte %d = %#x: %T %v", i, v, err, err)
			}
		}
		c[i] = b[i]
	}
	t.Logf("%d of %d changed files still read", n, 2048*4)
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	kv := []KV{
		{"general.architecture", "llama"}, {"n", uint32(3)}, {"f", float32(1)}, {"toks", []string{"a", "b"}},
		{"nested", []any{[]int8{1}, []any{}}}, {"b", []bool{true}}, {"u64", uint64(9)},
	}
	tensors := []Tensor{
		{Name: "a", Dims: []uint64{4}, Type: F32, Data: make([]byte, 16)},
		{Name: "q", Dims: []uint64{32, 2}, Type: Q8_0, Data: make([]byte, 68)},
	}
	if err := Encode(&buf, kv, tensors); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:100])
	f.Add(header(3, 1, 1).kv(KeyAlignment, 64).tensor("s", F32, 0).data(4).b)
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := readBytes(b, "fuzz.gguf")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "fuzz.gguf: ") {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		// What was read, written again, reads back the same.
		var tensors []Tensor
		for _, ti := range file.Tensors {
			start := file.DataOffset + int64(ti.Offset)
			if start < 0 || start+int64(ti.Size()) > int64(len(b)) {
				t.Fatalf("tensor %s lies outside the file", ti.Name)
			}
			tensors = append(tensors, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: b[start : start+int64(ti.Size())]})
		}
		var out bytes.Buffer
		if err := Encode(&out, file.KV, tensors); err != nil {
			return // e.g. an empty name, which ggml reads but Encode refuses
		}
		again, err := readBytes(out.Bytes(), "again.gguf")
		if err != nil {
			t.Fatal(err)
		}
		tensors = tensors[:0]
		for _, ti := range again.Tensors {
			start := again.DataOffset + int64(ti.Offset)
			tensors = append(tensors, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: out.Bytes()[start : start+int64(ti.Size())]})
		}
		var out2 bytes.Buffer
		if err := Encode(&out2, again.KV, tensors); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatal("encoding what was read changes the bytes")
		}
	})
}
