package gguf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTensorDigest: a file written with its tensor digest checks clean;
// one flipped byte inside a tensor's data is a *CorruptError naming the
// file; a file without the key checks clean whatever its data.
func TestTensorDigest(t *testing.T) {
	ts := []Tensor{
		{Name: "a", Dims: []uint64{3}, Type: F32, Data: F32Data([]float32{1, 2, 3})},
		{Name: "b", Dims: []uint64{5}, Type: F32, Data: F32Data([]float32{4, 5, 6, 7, 8})},
	}
	dir := t.TempDir()
	with, without := filepath.Join(dir, "with.gguf"), filepath.Join(dir, "without.gguf")
	if err := Write(with, WithTensorDigest([]KV{{Key: "general.architecture", Value: "llama"}}, ts), ts); err != nil {
		t.Fatal(err)
	}
	if err := Write(without, []KV{{Key: "general.architecture", Value: "llama"}}, ts); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{with, without} {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.CheckTensorData(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		// Flip a byte of b's data.
		b, _ := os.ReadFile(p)
		ti, _ := f.Tensor("b")
		b[f.DataOffset+int64(ti.Offset)+9] ^= 1
		os.WriteFile(p, b, 0o644)
	}
	f, _ := Open(with)
	err := f.CheckTensorData()
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), with+": tensor data does not match its digest (the file is corrupt)") {
		t.Fatalf("a flipped byte: %v", err)
	}
	f, _ = Open(without)
	if err := f.CheckTensorData(); err != nil {
		t.Fatalf("a file without the key: %v", err)
	}
}
