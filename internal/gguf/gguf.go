// Package gguf reads and writes GGUF files, the model file format of ggml and
// llama.cpp, in pure Go.
//
// finetune uses it wherever it needs to know what is in a model file without
// loading the model: a base model's hyper-parameters, tokenizer and tensor
// layout; checks that a file is complete before handing it to llama.cpp; and
// the LoRA adapter files it writes for llama.cpp and Ollama.
//
// [Open] and [Read] parse and check the metadata (key/values and tensor
// infos) but never load tensor data; [File.ReadTensorData] reads one tensor's
// raw bytes on demand. [Write] writes a complete GGUF v3 file atomically and
// [Encode] streams one to any writer.
//
// A GGUF file (little-endian) is:
//
//	magic "GGUF", uint32 version, uint64 tensor count, uint64 key/value count
//	key/values:   string key, uint32 value type, value
//	tensor infos: string name, uint32 n_dims, n_dims × uint64 ne, uint32 ggml type, uint64 offset
//	padding to the alignment (general.alignment, default 32)
//	data section: each tensor at its offset, a multiple of the alignment
//
// where a string is a uint64 byte length and the bytes, and an array value is
// a uint32 element type, a uint64 count and the elements.
//
// Every problem with a file's content is reported as a [*FormatError] that
// names the file and says what is wrong where. A corrupt or hostile file never
// makes the reader panic or allocate much more memory than the file's size.
package gguf

import (
	"fmt"
	"math"
)

// Version is the GGUF version that [Write] and [Encode] produce.
const Version = 3

// DefaultAlignment is the alignment of tensor data when a file has no
// general.alignment key.
const DefaultAlignment = 32

// KeyAlignment is the key of the optional uint32 that sets the alignment.
const KeyAlignment = "general.alignment"

// MaxDims is the largest number of dimensions a ggml tensor has.
const MaxDims = 4

// MaxTensorNameLen is the longest tensor name ggml accepts, in bytes
// (GGML_MAX_NAME is 64 including the terminating NUL).
const MaxTensorNameLen = 63

// maxKeyLen is the longest key the GGUF specification allows, in bytes.
const maxKeyLen = math.MaxUint16

// maxArrayDepth bounds how deeply arrays may nest, so that a corrupt file
// cannot exhaust the stack.
const maxArrayDepth = 32

// KV is one metadata key/value pair.
//
// Value holds one of these Go types, each matching one GGUF value type:
// uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32, float64,
// bool, string; arrays of these as []uint8, []int8, []uint16, []int16,
// []uint32, []int32, []uint64, []int64, []float32, []float64, []bool,
// []string; and an array of arrays as []any whose elements are arrays.
//
// The GGUF specification allows arrays of arrays, but llama.cpp's reader
// (gguf.cpp) refuses a file that holds one: do not write them into files meant
// for llama.cpp or Ollama.
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor of a file: its name, shape and type, and
// where its data lies.
type TensorInfo struct {
	Name string
	// Dims are ggml's ne: the number of elements along each dimension,
	// innermost (contiguous) first. Files written by ggml have 1 to 4;
	// converters write 0 for a scalar, which holds 1 element.
	Dims   []uint64
	Type   TensorType
	Offset uint64 // of the data, relative to the start of the data section
}

// NumElements returns the number of elements: the product of Dims. It
// cannot overflow for a TensorInfo that [Read] returned.
func (t TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Size returns the number of bytes of the tensor's data. It is 0 when the
// type is unknown or the shape does not fit the type, which never happens
// for a TensorInfo that [Read] returned.
func (t TensorInfo) Size() uint64 {
	size, err := tensorSize(t.Type, t.Dims)
	if err != nil {
		return 0
	}
	return size
}

// File is the metadata of a GGUF file. Its methods only read it, so a File
// may be used from several goroutines at once.
type File struct {
	Path       string       // as given to Open, or the name given to Read
	Version    uint32       // 2 or 3
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  uint64       // of the tensor data
	DataOffset int64        // absolute offset of the data section
	FileSize   int64

	tensorIndex map[string]int // Tensors index by name, built by Read
}

// Get returns the value of a key.
func (f *File) Get(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// String returns the value of a string key.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.(string)
	return s, ok
}

// Strings returns the value of a string-array key.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.([]string)
	return s, ok
}

// Uint returns the value of an integer key that is not negative, whatever
// its integer type.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	}
	if i, ok := signed(v); ok && i >= 0 {
		return uint64(i), true
	}
	return 0, false
}

// Int returns the value of an integer key whose value fits an int64,
// whatever its integer type.
func (f *File) Int(key string) (int64, bool) {
	v, _ := f.Get(key)
	switch v := v.(type) {
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		if v > math.MaxInt64 {
			return 0, false
		}
		return int64(v), true
	}
	return signed(v)
}

// signed converts a signed integer value to int64.
func signed(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

// Float returns the value of a floating-point key, or of an integer key
// converted to float64.
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch v := v.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	case uint64:
		return float64(v), true
	}
	if i, ok := f.Int(key); ok {
		return float64(i), true
	}
	return 0, false
}

// Architecture returns general.architecture ("llama", ...), or "" when the
// file has none.
func (f *File) Architecture() string {
	s, _ := f.String("general.architecture")
	return s
}

// Tensor returns the info of the tensor with the given name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	if i, ok := f.tensorIndex[name]; ok && i < len(f.Tensors) && f.Tensors[i].Name == name {
		return f.Tensors[i], true
	}
	// Tensors was changed since Read, or the File was built by hand.
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// FormatError reports a problem with the content of a GGUF file.
type FormatError struct {
	Path   string // the file, as the caller named it
	Offset int64  // where in the file the problem was found
	Msg    string
}

func (e *FormatError) Error() string {
	if e.Path == "" {
		return "gguf: " + e.Msg
	}
	return e.Path + ": " + e.Msg
}

// quote quotes a key or tensor name for a message, shortening one that is
// too long to read (as a corrupt file's names may be).
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q… (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}
