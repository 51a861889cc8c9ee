package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// Tensor is a tensor to write.
type Tensor struct {
	Name string
	Dims []uint64 // ggml ne, innermost first; 1 to 4 of them
	Type TensorType
	Data []byte // exactly as many bytes as Dims and Type make
}

// Write writes a GGUF v3 file holding kv and tensors to path; see [Encode]
// for what it writes and checks.
//
// The file is replaced atomically: Write writes a temporary file in the
// same folder, flushes it to disk and renames it over path, so that path
// holds either its old content or the complete new file. On any error the
// temporary file is removed and an existing file at path is left as it was.
// A new file gets mode 0644; a replaced one keeps its mode.
func Write(path string, kv []KV, tensors []Tensor) (err error) {
	enc, err := prepare(kv, tensors)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	perm := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		perm = st.Mode().Perm()
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close() // may already be closed; the error does not matter then
			os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err := enc.encode(tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable; not every file system can sync a
	// folder, and the file is complete either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Encode writes a GGUF v3 file holding kv and tensors to w.
//
// It writes the key/values in the given order, with exactly the value types
// their Go types name (see [KV]); it adds no keys, so general.alignment is
// written only if kv holds it. The alignment is kv's general.alignment, which
// must then be a uint32 power of 2, or 32. Tensor infos follow in the given
// order, then the tensors' data, each padded to the alignment as ggml does.
//
// Encode checks its input before writing anything: keys must be non-empty
// and unique, values of a supported type; tensor names non-empty, unique and
// at most [MaxTensorNameLen] bytes; each tensor must have 1 to 4 dimensions,
// a known type whose block size divides Dims[0], and exactly as many bytes
// of data as its shape and type make. Errors name the key or tensor.
func Encode(w io.Writer, kv []KV, tensors []Tensor) error {
	enc, err := prepare(kv, tensors)
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := enc.encode(w); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// encoding is a checked input to Encode, with the tensors' data offsets.
type encoding struct {
	kv        []KV
	tensors   []Tensor
	alignment uint64
	offsets   []uint64
}

// prepare checks the input of Encode and lays out the data section.
func prepare(kv []KV, tensors []Tensor) (*encoding, error) {
	enc := &encoding{kv: kv, tensors: tensors, alignment: DefaultAlignment}
	keys := make(map[string]int, len(kv))
	for i, p := range kv {
		if p.Key == "" {
			return nil, fmt.Errorf("key %d of %d is empty", i+1, len(kv))
		}
		if len(p.Key) > maxKeyLen {
			return nil, fmt.Errorf("key %s is %d bytes long; GGUF allows at most %d", quote(p.Key), len(p.Key), maxKeyLen)
		}
		if j, dup := keys[p.Key]; dup {
			return nil, fmt.Errorf("duplicate key %s (keys %d and %d)", quote(p.Key), j+1, i+1)
		}
		keys[p.Key] = i
		if err := checkValue(p.Value, 0); err != nil {
			return nil, fmt.Errorf("key %s: %w", quote(p.Key), err)
		}
		if p.Key == KeyAlignment {
			a, ok := p.Value.(uint32)
			if !ok {
				return nil, fmt.Errorf("key %s must be a uint32, not %T", KeyAlignment, p.Value)
			}
			if a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("key %s: alignment %d is not a power of 2", KeyAlignment, a)
			}
			enc.alignment = uint64(a)
		}
	}

	names := make(map[string]int, len(tensors))
	enc.offsets = make([]uint64, len(tensors))
	var offset uint64
	for i, t := range tensors {
		if t.Name == "" {
			return nil, fmt.Errorf("tensor %d of %d has no name", i+1, len(tensors))
		}
		if len(t.Name) > MaxTensorNameLen {
			return nil, fmt.Errorf("tensor %s: the name is %d bytes long; ggml allows at most %d", quote(t.Name), len(t.Name), MaxTensorNameLen)
		}
		if j, dup := names[t.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor name %s (tensors %d and %d)", quote(t.Name), j+1, i+1)
		}
		names[t.Name] = i
		if len(t.Dims) < 1 || len(t.Dims) > MaxDims {
			return nil, fmt.Errorf("tensor %s has %d dimensions %v; ggml needs 1 to %d", quote(t.Name), len(t.Dims), t.Dims, MaxDims)
		}
		elements := uint64(1)
		for _, d := range t.Dims {
			hi, lo := bits.Mul64(elements, d)
			if hi != 0 || lo > math.MaxInt64 {
				return nil, fmt.Errorf("tensor %s: shape %v has more elements than ggml can address (2^63-1)", quote(t.Name), t.Dims)
			}
			elements = lo
		}
		if _, ok := tensorTypes[t.Type]; !ok {
			return nil, fmt.Errorf("tensor %s has %s", quote(t.Name), t.Type.describeUnknown())
		}
		size, err := tensorSize(t.Type, t.Dims)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: shape %v does not fit type %s: %w", quote(t.Name), t.Dims, t.Type, err)
		}
		if uint64(len(t.Data)) != size {
			return nil, fmt.Errorf("tensor %s has %d bytes of data, but %s %v takes %d", quote(t.Name), len(t.Data), t.Type, t.Dims, size)
		}
		enc.offsets[i] = offset
		offset += padding(size, enc.alignment) + size // no overflow: size is len(t.Data)
	}
	return enc, nil
}

// padding returns the bytes that bring n up to a multiple of alignment.
func padding(n, alignment uint64) uint64 {
	return (alignment - n%alignment) % alignment
}

// scalarType returns the GGUF type of a scalar value.
func scalarType(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	}
	return 0, false
}

// elemType returns the GGUF element type of an array value.
func elemType(v any) (ValueType, bool) {
	switch v.(type) {
	case []uint8:
		return TypeUint8, true
	case []int8:
		return TypeInt8, true
	case []uint16:
		return TypeUint16, true
	case []int16:
		return TypeInt16, true
	case []uint32:
		return TypeUint32, true
	case []int32:
		return TypeInt32, true
	case []float32:
		return TypeFloat32, true
	case []bool:
		return TypeBool, true
	case []string:
		return TypeString, true
	case []uint64:
		return TypeUint64, true
	case []int64:
		return TypeInt64, true
	case []float64:
		return TypeFloat64, true
	case []any:
		return TypeArray, true
	}
	return 0, false
}

// valueTypeOf returns the GGUF type of a value.
func valueTypeOf(v any) (ValueType, bool) {
	if t, ok := scalarType(v); ok {
		return t, true
	}
	if _, ok := elemType(v); ok {
		return TypeArray, true
	}
	return 0, false
}

// checkValue checks that v is a value Encode can write; depth counts the
// arrays v is nested in.
func checkValue(v any, depth int) error {
	if _, ok := valueTypeOf(v); !ok {
		return unsupported(v)
	}
	elems, ok := v.([]any)
	if !ok {
		return nil
	}
	if depth+1 >= maxArrayDepth {
		return fmt.Errorf("arrays nest more than %d deep", maxArrayDepth)
	}
	for i, e := range elems {
		if _, ok := elemType(e); !ok {
			if _, ok := scalarType(e); ok {
				return fmt.Errorf("element %d of a []any is a %T, but the elements of a []any must be arrays (for an array of %Ts use []%T)", i, e, e, e)
			}
			return fmt.Errorf("element %d of a []any: %w", i, unsupported(e))
		}
		if err := checkValue(e, depth+1); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

func unsupported(v any) error {
	const supported = "uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32, float64, bool, string, a slice of one of these, or []any holding such slices"
	switch v.(type) {
	case nil:
		return errors.New("the value is nil; GGUF values are " + supported)
	case int, uint, []int, []uint:
		return fmt.Errorf("unsupported value type %T: GGUF has no integer of unspecified size; use int32/uint32 or int64/uint64", v)
	}
	return fmt.Errorf("unsupported value type %T; GGUF values are %s", v, supported)
}

// encode writes the checked input to w.
func (enc *encoding) encode(w io.Writer) error {
	e := &encoder{w: bufio.NewWriterSize(w, bufSize)}
	e.write([]byte("GGUF"))
	e.u32(Version)
	e.u64(uint64(len(enc.tensors)))
	e.u64(uint64(len(enc.kv)))
	for _, p := range enc.kv {
		e.str(p.Key)
		if t, ok := scalarType(p.Value); ok {
			e.u32(uint32(t))
			e.scalar(p.Value)
		} else {
			e.u32(uint32(TypeArray))
			e.array(p.Value)
		}
	}
	for i, t := range enc.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(enc.offsets[i])
	}
	e.pad(enc.alignment)
	for _, t := range enc.tensors {
		e.write(t.Data)
		e.pad(enc.alignment)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// encoder writes little-endian values, keeping the first error.
type encoder struct {
	w       *bufio.Writer
	n       uint64 // bytes written
	err     error
	scratch [bufSize]byte
}

func (e *encoder) write(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += uint64(n)
}

func (e *encoder) u32(v uint32) { e.write(binary.LittleEndian.AppendUint32(e.scratch[:0], v)) }
func (e *encoder) u64(v uint64) { e.write(binary.LittleEndian.AppendUint64(e.scratch[:0], v)) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var n int
		n, e.err = e.w.WriteString(s)
		e.n += uint64(n)
	}
}

func (e *encoder) pad(alignment uint64) {
	for p := padding(e.n, alignment); p > 0 && e.err == nil; {
		zeros := e.scratch[:min(p, bufSize)]
		clear(zeros)
		e.write(zeros)
		p -= uint64(len(zeros))
	}
}

// scalar writes a scalar value, which checkValue has accepted.
func (e *encoder) scalar(v any) {
	b := e.scratch[:0]
	switch v := v.(type) {
	case uint8:
		b = appU8(b, v)
	case int8:
		b = appI8(b, v)
	case uint16:
		b = appU16(b, v)
	case int16:
		b = appI16(b, v)
	case uint32:
		b = appU32(b, v)
	case int32:
		b = appI32(b, v)
	case float32:
		b = appF32(b, v)
	case bool:
		b = appBool(b, v)
	case uint64:
		b = appU64(b, v)
	case int64:
		b = appI64(b, v)
	case float64:
		b = appF64(b, v)
	case string:
		e.str(v)
		return
	}
	e.write(b)
}

// array writes an array value's element type, count and elements.
func (e *encoder) array(v any) {
	switch v := v.(type) {
	case []uint8:
		putArray(e, TypeUint8, v, appU8)
	case []int8:
		putArray(e, TypeInt8, v, appI8)
	case []uint16:
		putArray(e, TypeUint16, v, appU16)
	case []int16:
		putArray(e, TypeInt16, v, appI16)
	case []uint32:
		putArray(e, TypeUint32, v, appU32)
	case []int32:
		putArray(e, TypeInt32, v, appI32)
	case []float32:
		putArray(e, TypeFloat32, v, appF32)
	case []bool:
		putArray(e, TypeBool, v, appBool)
	case []uint64:
		putArray(e, TypeUint64, v, appU64)
	case []int64:
		putArray(e, TypeInt64, v, appI64)
	case []float64:
		putArray(e, TypeFloat64, v, appF64)
	case []string:
		e.u32(uint32(TypeString))
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []any:
		e.u32(uint32(TypeArray))
		e.u64(uint64(len(v)))
		for _, a := range v {
			e.array(a)
		}
	}
}

// putArray writes a numeric or bool array, encoding it in chunks.
func putArray[T any](e *encoder, t ValueType, s []T, app func([]byte, T) []byte) {
	e.u32(uint32(t))
	e.u64(uint64(len(s)))
	b := e.scratch[:0]
	for _, x := range s {
		if len(b) > bufSize-8 {
			e.write(b)
			b = b[:0]
		}
		b = app(b, x)
	}
	e.write(b)
}

func appU8(b []byte, v uint8) []byte   { return append(b, v) }
func appI8(b []byte, v int8) []byte    { return append(b, byte(v)) }
func appU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appI16(b []byte, v int16) []byte  { return binary.LittleEndian.AppendUint16(b, uint16(v)) }
func appU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appI32(b []byte, v int32) []byte  { return binary.LittleEndian.AppendUint32(b, uint32(v)) }
func appU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appI64(b []byte, v int64) []byte  { return binary.LittleEndian.AppendUint64(b, uint64(v)) }
func appF32(b []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}
func appF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}
func appBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
