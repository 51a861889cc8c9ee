package gguf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// TensorDataKey is the metadata key under which finetune records the
// SHA-256 of a file's tensor data (TensorDataSHA256): llama.cpp and Ollama
// ignore keys they do not know, so the file loads there as before.
const TensorDataKey = "finetune.tensor_data_sha256"

// TensorDataSHA256 is the hex SHA-256 of the tensors' data, in order, each
// tensor's bytes without the padding between them: what [File.CheckTensorData]
// recomputes from a file written with these tensors.
func TensorDataSHA256(tensors []Tensor) string {
	h := sha256.New()
	for _, t := range tensors {
		h.Write(t.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WithTensorDigest is kv with TensorDataKey set to the tensors' digest.
func WithTensorDigest(kv []KV, tensors []Tensor) []KV {
	out := make([]KV, 0, len(kv)+1)
	for _, e := range kv {
		if e.Key != TensorDataKey {
			out = append(out, e)
		}
	}
	return append(out, KV{Key: TensorDataKey, Value: TensorDataSHA256(tensors)})
}

// CorruptError is a file whose tensor data does not match the digest its
// metadata records.
type CorruptError struct {
	Path       string
	Want, Have string // hex SHA-256
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: tensor data does not match its digest (the file is corrupt): %s records sha256 %s, the data has %s",
		e.Path, TensorDataKey, shortHex(e.Want), shortHex(e.Have))
}

func shortHex(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// CheckTensorData recomputes the SHA-256 of the file's tensor data (in the
// order of f.Tensors) and compares it with the digest under TensorDataKey:
// a *CorruptError when they differ, nil when they match or the file
// records no digest (older files, files of other tools). It reads the
// whole data section once, streaming.
func (f *File) CheckTensorData() error {
	want, ok := f.String(TensorDataKey)
	if !ok {
		return nil
	}
	have, err := f.TensorDataSHA256()
	if err != nil {
		return err
	}
	if have != want {
		return &CorruptError{Path: f.Path, Want: want, Have: have}
	}
	return nil
}

// TensorDataSHA256 is the hex SHA-256 of the file's tensor data, as
// [TensorDataSHA256] computes it for the tensors written.
func (f *File) TensorDataSHA256() (string, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	for _, t := range f.Tensors {
		start := f.DataOffset + int64(t.Offset)
		n, err := io.Copy(h, io.NewSectionReader(fh, start, int64(t.Size())))
		if err != nil {
			return "", fmt.Errorf("%s: reading tensor %s: %w", f.Path, quote(t.Name), err)
		}
		if n != int64(t.Size()) {
			return "", &FormatError{Path: f.Path, Offset: start, Msg: fmt.Sprintf("tensor %s data ends past the end of the file: the file was truncated", quote(t.Name))}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
