package gguf

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
)

// Fewest bytes one entry can take, used to reject counts that the rest of
// the file could not hold before anything is allocated for them.
const (
	minKVSize         = 8 + 4 + 1     // key length, value type, 1-byte value
	minTensorInfoSize = 8 + 4 + 4 + 8 // name length, n_dims (0), type, offset
)

// bufSize is the size of the read buffer, and of the chunks in which
// numeric arrays are decoded.
const bufSize = 64 << 10

// Open reads and checks the metadata of the GGUF file at path. It does not
// read tensor data, but checks that every tensor's data lies inside the file.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not a GGUF file", path)
	}
	return Read(fh, st.Size(), path)
}

// Read reads and checks the metadata of a GGUF file of size bytes from r,
// as [Open] does; name identifies the file in errors and becomes File.Path
// (which [File.ReadTensorData] opens). If r holds fewer than size bytes, the
// file is taken to end where r does.
//
// Read accepts what ggml's own reader accepts, and also arrays of arrays
// (which the GGUF specification allows but llama.cpp refuses) and tensors
// laid out in any order, as long as each is aligned, inside the file and
// apart from the others.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	d := &decoder{r: r, size: size, path: name, at: position{kind: "the header"}}
	return d.file()
}

// ReadTensorData reads the raw bytes of the named tensor from the file at
// f.Path.
func (f *File) ReadTensorData(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor named %s", f.Path, quote(name))
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	size := t.Size()
	start := uint64(f.DataOffset) + t.Offset
	if end := start + size; end < start || end > uint64(st.Size()) {
		return nil, &FormatError{Path: f.Path, Offset: int64(min(start, math.MaxInt64)), Msg: fmt.Sprintf(
			"tensor %s data [%d, %d) lies past the end of the file (%d bytes): the file was truncated or replaced since it was opened",
			quote(name), start, end, st.Size())}
	}
	data := make([]byte, size)
	if _, err := fh.ReadAt(data, int64(start)); err != nil {
		return nil, fmt.Errorf("%s: reading tensor %s: %w", f.Path, quote(name), err)
	}
	return data, nil
}

// position names the part of the file being read, for error messages.
type position struct {
	kind string // "the header", "key" or "tensor"
	i, n uint64 // index (from 0) and count of keys or tensors
	name string // the key or tensor name, once read
}

func (p position) String() string {
	if p.n == 0 {
		return p.kind
	}
	s := fmt.Sprintf("%s %d of %d", p.kind, p.i+1, p.n)
	if p.name != "" {
		s += " (" + quote(p.name) + ")"
	}
	return s
}

// decoder reads a GGUF file's metadata through a buffer, checking every
// length against the bytes left in the file before it is used.
type decoder struct {
	r      io.ReaderAt
	size   int64
	path   string
	off    int64  // offset of the next byte to decode
	buf    []byte // the file's bytes [bufOff, bufOff+len(buf))
	bufOff int64
	at     position
}

// errorf returns a FormatError about the file at offset off.
func (d *decoder) errorf(off int64, format string, args ...any) error {
	return &FormatError{Path: d.path, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// fail returns a FormatError about the item being read.
func (d *decoder) fail(off int64, format string, args ...any) error {
	return d.errorf(off, "%s: %s", d.at, fmt.Sprintf(format, args...))
}

func (d *decoder) truncated() error {
	return d.errorf(d.off, "truncated: file ends at byte %d while reading %s: the file is incomplete (interrupted download or copy?)", d.size, d.at)
}

// remaining returns the number of bytes after the decoding position.
func (d *decoder) remaining() uint64 {
	return uint64(d.size - d.off)
}

// take consumes the next n bytes. The slice is valid until the next call.
func (d *decoder) take(n uint64) ([]byte, error) {
	if n > d.remaining() {
		return nil, d.truncated()
	}
	start := d.off
	if start < d.bufOff || start+int64(n) > d.bufOff+int64(len(d.buf)) {
		var p []byte
		if n > bufSize {
			p = make([]byte, n) // a long string; n is within the file
		} else {
			if d.buf == nil {
				d.buf = make([]byte, min(bufSize, d.size))
			}
			p = d.buf[:min(bufSize, d.size-start)]
		}
		p, err := d.fill(p, start)
		if err != nil {
			return nil, err
		}
		d.buf, d.bufOff = p, start
		if n > d.remaining() {
			return nil, d.truncated()
		}
	}
	d.off += int64(n)
	return d.buf[start-d.bufOff : d.off-d.bufOff], nil
}

// fill reads the file's bytes at off into p and returns them. When the
// reader ends before p is full, the file ends there, whatever size said.
func (d *decoder) fill(p []byte, off int64) ([]byte, error) {
	n, err := d.r.ReadAt(p, off)
	if n == len(p) {
		return p, nil // ReadAt may report io.EOF along with the last byte
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		d.size = off + int64(n)
		return p[:n], nil
	}
	return nil, fmt.Errorf("%s: reading %s at byte %d: %w", d.path, d.at, off, err)
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// str decodes a string; what names it in errors.
func (d *decoder) str(what string) (string, error) {
	off := d.off
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > d.remaining() {
		return "", d.fail(off, "%s length %d at byte %d runs past the end of the file (%d bytes left): the file is truncated or corrupt", what, n, off, d.remaining())
	}
	b, err := d.take(n)
	return string(b), err
}

func (d *decoder) file() (*File, error) {
	if d.size < 0 {
		return nil, d.errorf(0, "invalid file size %d", d.size)
	}
	f := &File{Path: d.path}
	if err := d.magic(); err != nil {
		return nil, err
	}
	var err error
	if f.Version, err = d.u32(); err != nil {
		return nil, err
	}
	if err := checkVersion(f.Version); err != nil {
		return nil, d.errorf(4, "%s", err)
	}
	nTensors, err := d.u64()
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64()
	if err != nil {
		return nil, err
	}
	left := d.remaining()
	if nKV > left/minKVSize {
		return nil, d.errorf(16, "the header claims %d key/values, but the %d bytes after it could hold at most %d: the file is truncated or corrupt", nKV, left, left/minKVSize)
	}
	if nTensors > left/minTensorInfoSize {
		return nil, d.errorf(8, "the header claims %d tensors, but the %d bytes after it could hold at most %d: the file is truncated or corrupt", nTensors, left, left/minTensorInfoSize)
	}

	alignment, alignOff, alignIdx := any(nil), int64(0), uint64(0)
	f.KV = make([]KV, 0, min(nKV, 1024))
	keys := make(map[string]uint64, min(nKV, 1024))
	for i := range nKV {
		d.at = position{kind: "key", i: i, n: nKV}
		keyOff := d.off
		key, err := d.str("key")
		if err != nil {
			return nil, err
		}
		d.at.name = key
		if j, dup := keys[key]; dup {
			return nil, d.fail(keyOff, "duplicate key (key %d has the same name)", j+1)
		}
		keys[key] = i
		typeOff := d.off
		typ, err := d.u32()
		if err != nil {
			return nil, err
		}
		v, err := d.value(ValueType(typ), typeOff, 0)
		if err != nil {
			return nil, err
		}
		if key == KeyAlignment {
			alignment, alignOff, alignIdx = v, typeOff, i
		}
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	d.at = position{kind: "key", i: alignIdx, n: nKV, name: KeyAlignment}
	f.Alignment = DefaultAlignment
	if alignment != nil {
		a, ok := alignment.(uint32)
		if !ok {
			t, _ := valueTypeOf(alignment)
			return nil, d.fail(alignOff, "the alignment must be a UINT32, not %s", t)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, d.fail(alignOff, "the alignment %d is not a power of 2", a)
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, min(nTensors, 1024))
	f.tensorIndex = make(map[string]int, min(nTensors, 1024))
	sizes := make([]uint64, 0, min(nTensors, 1024))
	for i := range nTensors {
		d.at = position{kind: "tensor", i: i, n: nTensors}
		infoOff := d.off
		t, size, err := d.tensorInfo(f.Alignment)
		if err != nil {
			return nil, err
		}
		if j, dup := f.tensorIndex[t.Name]; dup {
			return nil, d.fail(infoOff, "duplicate tensor name (tensor %d has the same name)", j+1)
		}
		f.tensorIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
		sizes = append(sizes, size)
	}

	// The data section starts at the next multiple of the alignment.
	dataOffset := (uint64(d.off) + f.Alignment - 1) / f.Alignment * f.Alignment
	f.DataOffset = int64(dataOffset)
	f.FileSize = d.size // less than size if the reader ended early
	if err := checkLayout(f, sizes); err != nil {
		return nil, err
	}
	return f, nil
}

// magic checks the file's first four bytes.
func (d *decoder) magic() error {
	const magic = "GGUF"
	head, err := d.fill(make([]byte, min(d.size, 64)), 0)
	if err != nil {
		return err
	}
	if len(head) < 4 {
		if len(head) == 0 {
			return d.errorf(0, "empty file (0 bytes), not a GGUF file")
		}
		if strings.HasPrefix(magic, string(head)) {
			return d.errorf(0, "truncated: file ends at byte %d while reading the header: the file is incomplete (interrupted download or copy?)", d.size)
		}
		return d.errorf(0, "not a GGUF file (starts with %q, expected %q)", head, magic)
	}
	if string(head[:4]) != magic {
		msg := fmt.Sprintf("not a GGUF file (starts with %q, expected %q)", head[:4], magic)
		if hint := magicHint(head); hint != "" {
			msg += ": " + hint
		}
		return d.errorf(0, "%s", msg)
	}
	d.off = 4
	return nil
}

// magicHint guesses what a file that is not GGUF is, from its first bytes.
func magicHint(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "it is a ZIP archive, such as a PyTorch checkpoint; convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py"
	case head[0] == 0x80 && head[1] <= 5:
		return "it looks like a Python pickle (a PyTorch checkpoint?); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py"
	case len(head) > 9 && string(head[8:10]) == `{"`:
		return "it looks like a safetensors file; convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py"
	case bytes.HasPrefix(head, []byte("version https://git-lfs")):
		return "it is a Git LFS pointer, not the model itself; fetch the file with `git lfs pull`"
	case bytes.Contains(bytes.ToLower(head), []byte("<html")), bytes.Contains(bytes.ToLower(head), []byte("<!doctype")):
		return "it is an HTML page, not a model (did a download save an error or login page?)"
	case string(head[:4]) == "lmgg", string(head[:4]) == "fmgg", string(head[:4]) == "tjgg":
		return "it is a model in one of the formats that came before GGUF (GGML, GGMF, GGJT); convert it with a current llama.cpp"
	}
	return ""
}

func checkVersion(v uint32) error {
	switch {
	case v == 2 || v == 3:
		return nil
	case v == 1:
		return fmt.Errorf("unsupported GGUF version 1 (finetune reads versions 2 and 3): version 1 is obsolete; convert the model again with a current llama.cpp")
	case v != 0 && v&0xFFFF == 0:
		return fmt.Errorf("unsupported GGUF version %d (finetune reads versions 2 and 3): the file looks big-endian, and finetune reads little-endian files only", v)
	}
	return fmt.Errorf("unsupported GGUF version %d (finetune reads versions 2 and 3)", v)
}

// value decodes a value of type t, whose type tag was at typeOff.
func (d *decoder) value(t ValueType, typeOff int64, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return scalar(d, 1, decU8)
	case TypeInt8:
		return scalar(d, 1, decI8)
	case TypeUint16:
		return scalar(d, 2, decU16)
	case TypeInt16:
		return scalar(d, 2, decI16)
	case TypeUint32:
		return scalar(d, 4, decU32)
	case TypeInt32:
		return scalar(d, 4, decI32)
	case TypeFloat32:
		return scalar(d, 4, decF32)
	case TypeBool:
		return scalar(d, 1, decBool)
	case TypeString:
		return d.str("string")
	case TypeUint64:
		return scalar(d, 8, decU64)
	case TypeInt64:
		return scalar(d, 8, decI64)
	case TypeFloat64:
		return scalar(d, 8, decF64)
	case TypeArray:
		return d.array(depth + 1)
	}
	return nil, d.fail(typeOff, "unknown value type %d at byte %d", uint32(t), typeOff)
}

// array decodes an array's element type, count and elements.
func (d *decoder) array(depth int) (any, error) {
	start := d.off
	if depth > maxArrayDepth {
		return nil, d.fail(start, "arrays nested more than %d deep at byte %d: the file is corrupt", maxArrayDepth, start)
	}
	et, err := d.u32()
	if err != nil {
		return nil, err
	}
	t := ValueType(et)
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	minSize := t.minEncodedSize()
	if minSize == 0 {
		return nil, d.fail(start, "array of unknown value type %d at byte %d", et, start)
	}
	if left := d.remaining(); n > left/minSize {
		return nil, d.fail(start, "array at byte %d claims %d %s elements (at least %d bytes each), but only %d bytes are left in the file: the file is truncated or corrupt", start, n, t, minSize, left)
	}
	switch t {
	case TypeUint8:
		return array(d, n, 1, decU8)
	case TypeInt8:
		return array(d, n, 1, decI8)
	case TypeUint16:
		return array(d, n, 2, decU16)
	case TypeInt16:
		return array(d, n, 2, decI16)
	case TypeUint32:
		return array(d, n, 4, decU32)
	case TypeInt32:
		return array(d, n, 4, decI32)
	case TypeFloat32:
		return array(d, n, 4, decF32)
	case TypeBool:
		return array(d, n, 1, decBool)
	case TypeUint64:
		return array(d, n, 8, decU64)
	case TypeInt64:
		return array(d, n, 8, decI64)
	case TypeFloat64:
		return array(d, n, 8, decF64)
	case TypeString:
		out := make([]string, 0, min(n, 1<<16))
		for range n {
			s, err := d.str("string")
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	default: // TypeArray: each element is an array with its own element type
		out := make([]any, 0, min(n, 1<<10))
		for range n {
			v, err := d.array(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
}

func scalar[T any](d *decoder, size uint64, dec func([]byte) T) (any, error) {
	b, err := d.take(size)
	if err != nil {
		return nil, err
	}
	return dec(b), nil
}

// array decodes n elements of size bytes each; the caller has checked that
// the file holds them, so the slice is no larger than the file.
func array[T any](d *decoder, n, size uint64, dec func([]byte) T) ([]T, error) {
	out := make([]T, 0, n)
	for n > 0 {
		chunk := min(n, bufSize/size)
		b, err := d.take(chunk * size)
		if err != nil {
			return nil, err
		}
		for i := uint64(0); i < uint64(len(b)); i += size {
			out = append(out, dec(b[i:i+size]))
		}
		n -= chunk
	}
	return out, nil
}

func decU8(b []byte) uint8    { return b[0] }
func decI8(b []byte) int8     { return int8(b[0]) }
func decU16(b []byte) uint16  { return binary.LittleEndian.Uint16(b) }
func decI16(b []byte) int16   { return int16(binary.LittleEndian.Uint16(b)) }
func decU32(b []byte) uint32  { return binary.LittleEndian.Uint32(b) }
func decI32(b []byte) int32   { return int32(binary.LittleEndian.Uint32(b)) }
func decU64(b []byte) uint64  { return binary.LittleEndian.Uint64(b) }
func decI64(b []byte) int64   { return int64(binary.LittleEndian.Uint64(b)) }
func decF32(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }
func decF64(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }
func decBool(b []byte) bool   { return b[0] != 0 } // as ggml reads it

// tensorInfo decodes one tensor info and checks it on its own; it returns
// the size of the tensor's data.
func (d *decoder) tensorInfo(alignment uint64) (TensorInfo, uint64, error) {
	var t TensorInfo
	name, err := d.str("name")
	if err != nil {
		return t, 0, err
	}
	t.Name = name
	d.at.name = name
	if len(name) > MaxTensorNameLen {
		return t, 0, d.fail(d.off, "the name is %d bytes long; ggml allows at most %d", len(name), MaxTensorNameLen)
	}
	nDimsOff := d.off
	nDims, err := d.u32()
	if err != nil {
		return t, 0, err
	}
	if nDims > MaxDims {
		return t, 0, d.fail(nDimsOff, "%d dimensions; ggml allows at most %d", nDims, MaxDims)
	}
	t.Dims = make([]uint64, nDims)
	elements := uint64(1)
	for j := range t.Dims {
		if t.Dims[j], err = d.u64(); err != nil {
			return t, 0, err
		}
		hi, lo := bits.Mul64(elements, t.Dims[j])
		if t.Dims[j] > math.MaxInt64 || hi != 0 || lo > math.MaxInt64 {
			return t, 0, d.fail(nDimsOff, "shape %v has more elements than ggml can address (2^63-1): the file is corrupt", t.Dims[:j+1])
		}
		elements = lo
	}
	typeOff := d.off
	typ, err := d.u32()
	if err != nil {
		return t, 0, err
	}
	t.Type = TensorType(typ)
	if _, ok := tensorTypes[t.Type]; !ok {
		return t, 0, d.fail(typeOff, "%s", t.Type.describeUnknown())
	}
	size, err := tensorSize(t.Type, t.Dims)
	if err != nil {
		return t, 0, d.fail(typeOff, "shape %v does not fit type %s: %v", t.Dims, t.Type, err)
	}
	offsetOff := d.off
	if t.Offset, err = d.u64(); err != nil {
		return t, 0, err
	}
	if t.Offset%alignment != 0 {
		return t, 0, d.fail(offsetOff, "data offset %d is not a multiple of the alignment (%d)", t.Offset, alignment)
	}
	return t, size, nil
}

// checkLayout checks that every tensor's data lies inside the file and that
// no two tensors share bytes.
func checkLayout(f *File, sizes []uint64) error {
	type span struct {
		i          int
		start, end uint64 // absolute; end is math.MaxUint64 on overflow
	}
	spans := make([]span, len(f.Tensors))
	for i, t := range f.Tensors {
		start, carry := bits.Add64(uint64(f.DataOffset), t.Offset, 0)
		end, carry2 := bits.Add64(start, sizes[i], 0)
		if carry != 0 || carry2 != 0 {
			start, end = math.MaxUint64, math.MaxUint64
		}
		spans[i] = span{i, start, end}
	}
	slices.SortStableFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	size := uint64(f.FileSize)
	for k, s := range spans {
		if s.end <= size {
			continue
		}
		t := f.Tensors[s.i]
		cut := len(spans) - k
		for _, later := range spans[k:] {
			if later.end <= size {
				cut--
			}
		}
		msg := fmt.Sprintf("tensor %s data [%d, %d) (%d bytes) lies past the end of the file (%d bytes)", quote(t.Name), s.start, s.end, sizes[s.i], size)
		if s.start == math.MaxUint64 {
			msg = fmt.Sprintf("tensor %s data offset %d lies past the end of the file (%d bytes)", quote(t.Name), t.Offset, size)
		}
		return &FormatError{Path: f.Path, Offset: int64(min(s.start, math.MaxInt64)), Msg: fmt.Sprintf(
			"%s: the file is truncated (%d of %d tensors are cut off; interrupted download or copy?)", msg, cut, len(spans))}
	}
	var prev *span
	for k := range spans {
		s := &spans[k]
		if s.start == s.end {
			continue
		}
		if prev != nil && s.start < prev.end {
			a, b := f.Tensors[prev.i], f.Tensors[s.i]
			return &FormatError{Path: f.Path, Offset: int64(s.start), Msg: fmt.Sprintf(
				"tensor %s data [%d, %d) overlaps tensor %s data [%d, %d): the file is corrupt",
				quote(b.Name), s.start, s.end, quote(a.Name), prev.start, prev.end)}
		}
		if prev == nil || s.end > prev.end {
			prev = s
		}
	}
	return nil
}
