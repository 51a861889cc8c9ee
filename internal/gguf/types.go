package gguf

import (
	"fmt"
	"math/bits"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value (gguf_type in ggml).
type ValueType uint32

// GGUF metadata value types. The numbers are part of the file format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8:   "UINT8",
	TypeInt8:    "INT8",
	TypeUint16:  "UINT16",
	TypeInt16:   "INT16",
	TypeUint32:  "UINT32",
	TypeInt32:   "INT32",
	TypeFloat32: "FLOAT32",
	TypeBool:    "BOOL",
	TypeString:  "STRING",
	TypeArray:   "ARRAY",
	TypeUint64:  "UINT64",
	TypeInt64:   "INT64",
	TypeFloat64: "FLOAT64",
}

// String returns the GGUF name of the type ("UINT32", "STRING", ...), or
// "ValueType(N)" for a number the format does not define.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// minEncodedSize is the fewest bytes one value of type t occupies in a file:
// a string needs its 8-byte length, an array its 4-byte element type and
// 8-byte count. It is 0 for an unknown type.
func (t ValueType) minEncodedSize() uint64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64, TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return 0
}

// TensorType is a ggml tensor element type (enum ggml_type). The numbers
// are part of the file format.
type TensorType uint32

// ggml tensor types. Numbers missing from the sequence (4, 5, 31-33, 36-38)
// belong to types that ggml has removed.
const (
	F32     TensorType = 0
	F16     TensorType = 1
	Q4_0    TensorType = 2
	Q4_1    TensorType = 3
	Q5_0    TensorType = 6
	Q5_1    TensorType = 7
	Q8_0    TensorType = 8
	Q8_1    TensorType = 9
	Q2_K    TensorType = 10
	Q3_K    TensorType = 11
	Q4_K    TensorType = 12
	Q5_K    TensorType = 13
	Q6_K    TensorType = 14
	Q8_K    TensorType = 15
	IQ2_XXS TensorType = 16
	IQ2_XS  TensorType = 17
	IQ3_XXS TensorType = 18
	IQ1_S   TensorType = 19
	IQ4_NL  TensorType = 20
	IQ3_S   TensorType = 21
	IQ2_S   TensorType = 22
	IQ4_XS  TensorType = 23
	I8      TensorType = 24
	I16     TensorType = 25
	I32     TensorType = 26
	I64     TensorType = 27
	F64     TensorType = 28
	IQ1_M   TensorType = 29
	BF16    TensorType = 30
	TQ1_0   TensorType = 34
	TQ2_0   TensorType = 35
	MXFP4   TensorType = 39
)

// tensorTypeInfo describes how ggml lays out one tensor type: elements are
// stored in blocks of blockSize elements taking typeSize bytes each.
type tensorTypeInfo struct {
	name      string
	blockSize int
	typeSize  int
}

// tensorTypes holds the ggml type traits (ggml.c type_traits: blck_size and
// type_size, which is sizeof the block struct in ggml-common.h).
var tensorTypes = map[TensorType]tensorTypeInfo{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", 32, 18},
	Q4_1:    {"Q4_1", 32, 20},
	Q5_0:    {"Q5_0", 32, 22},
	Q5_1:    {"Q5_1", 32, 24},
	Q8_0:    {"Q8_0", 32, 34},
	Q8_1:    {"Q8_1", 32, 36},
	Q2_K:    {"Q2_K", 256, 84},
	Q3_K:    {"Q3_K", 256, 110},
	Q4_K:    {"Q4_K", 256, 144},
	Q5_K:    {"Q5_K", 256, 176},
	Q6_K:    {"Q6_K", 256, 210},
	Q8_K:    {"Q8_K", 256, 292},
	IQ2_XXS: {"IQ2_XXS", 256, 66},
	IQ2_XS:  {"IQ2_XS", 256, 74},
	IQ3_XXS: {"IQ3_XXS", 256, 98},
	IQ1_S:   {"IQ1_S", 256, 50},
	IQ4_NL:  {"IQ4_NL", 32, 18},
	IQ3_S:   {"IQ3_S", 256, 110},
	IQ2_S:   {"IQ2_S", 256, 82},
	IQ4_XS:  {"IQ4_XS", 256, 136},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", 256, 56},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", 256, 54},
	TQ2_0:   {"TQ2_0", 256, 66},
	MXFP4:   {"MXFP4", 32, 17},
}

// removedTensorTypes names the type numbers ggml used once and has since
// removed, so that an error about such a file can say what it holds.
var removedTensorTypes = map[TensorType]string{
	4:  "Q4_2",
	5:  "Q4_3",
	31: "Q4_0_4_4",
	32: "Q4_0_4_8",
	33: "Q4_0_8_8",
	36: "IQ4_NL_4_4",
	37: "IQ4_NL_4_8",
	38: "IQ4_NL_8_8",
}

// String returns the type's name as llama.cpp's tools print it ("F32",
// "Q4_K", ...), or "type(N)" for a type this package does not know.
func (t TensorType) String() string {
	if info, ok := tensorTypes[t]; ok {
		return info.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize returns the number of elements in one block of the type; false
// when the type is unknown.
func (t TensorType) BlockSize() (int, bool) {
	info, ok := tensorTypes[t]
	return info.blockSize, ok
}

// TypeSize returns the number of bytes one block of the type takes; false
// when the type is unknown.
func (t TensorType) TypeSize() (int, bool) {
	info, ok := tensorTypes[t]
	return info.typeSize, ok
}

// describeUnknown explains an unknown tensor type number for an error message.
func (t TensorType) describeUnknown() string {
	if name, ok := removedTensorTypes[t]; ok {
		return fmt.Sprintf("type %d (%s, which ggml no longer supports; convert the model again with a current llama.cpp)", uint32(t), name)
	}
	return fmt.Sprintf("unknown type %d", uint32(t))
}

// ParseTensorType parses a type name such as "f16", "Q8_0" or "q4_k"; case
// does not matter.
func ParseTensorType(s string) (TensorType, error) {
	for t, info := range tensorTypes {
		if strings.EqualFold(info.name, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown tensor type %q (known types: %s)", s, strings.Join(tensorTypeNames(), ", "))
}

// tensorTypeNames lists the known type names in ggml's numeric order.
func tensorTypeNames() []string {
	var names []string
	for t := TensorType(0); t <= MXFP4; t++ {
		if info, ok := tensorTypes[t]; ok {
			names = append(names, info.name)
		}
	}
	return names
}

// RowSize returns the number of bytes a row of ne0 elements of type t takes.
// ne0 must be a multiple of the type's block size.
func RowSize(t TensorType, ne0 uint64) (uint64, error) {
	info, ok := tensorTypes[t]
	if !ok {
		return 0, fmt.Errorf("%s: cannot compute its size", t.describeUnknown())
	}
	if ne0%uint64(info.blockSize) != 0 {
		return 0, fmt.Errorf("a row of %d elements is not a multiple of the %s block size (%d)", ne0, info.name, info.blockSize)
	}
	hi, size := bits.Mul64(ne0/uint64(info.blockSize), uint64(info.typeSize))
	if hi != 0 {
		return 0, fmt.Errorf("a row of %d %s elements takes more than 2^64 bytes", ne0, info.name)
	}
	return size, nil
}

// tensorSize returns the bytes a tensor of type t and shape dims takes, with
// an error that says why when the shape does not fit the type or the size
// overflows.
func tensorSize(t TensorType, dims []uint64) (uint64, error) {
	ne0 := uint64(1)
	if len(dims) > 0 {
		ne0 = dims[0]
	}
	size, err := RowSize(t, ne0)
	if err != nil {
		return 0, err
	}
	for _, d := range dims[min(1, len(dims)):] {
		var hi uint64
		hi, size = bits.Mul64(size, d)
		if hi != 0 {
			return 0, fmt.Errorf("shape %v of type %s takes more than 2^64 bytes", dims, t)
		}
	}
	return size, nil
}

// fileTypeNames maps general.file_type (llama.cpp's enum llama_ftype) to the
// enum names without their LLAMA_FTYPE_ prefix.
var fileTypeNames = map[uint32]string{
	0:  "ALL_F32",
	1:  "MOSTLY_F16",
	2:  "MOSTLY_Q4_0",
	3:  "MOSTLY_Q4_1",
	4:  "MOSTLY_Q4_1_SOME_F16", // no longer produced, still found in old files
	7:  "MOSTLY_Q8_0",
	8:  "MOSTLY_Q5_0",
	9:  "MOSTLY_Q5_1",
	10: "MOSTLY_Q2_K",
	11: "MOSTLY_Q3_K_S",
	12: "MOSTLY_Q3_K_M",
	13: "MOSTLY_Q3_K_L",
	14: "MOSTLY_Q4_K_S",
	15: "MOSTLY_Q4_K_M",
	16: "MOSTLY_Q5_K_S",
	17: "MOSTLY_Q5_K_M",
	18: "MOSTLY_Q6_K",
	19: "MOSTLY_IQ2_XXS",
	20: "MOSTLY_IQ2_XS",
	21: "MOSTLY_Q2_K_S",
	22: "MOSTLY_IQ3_XS",
	23: "MOSTLY_IQ3_XXS",
	24: "MOSTLY_IQ1_S",
	25: "MOSTLY_IQ4_NL",
	26: "MOSTLY_IQ3_S",
	27: "MOSTLY_IQ3_M",
	28: "MOSTLY_IQ2_S",
	29: "MOSTLY_IQ2_M",
	30: "MOSTLY_IQ4_XS",
	31: "MOSTLY_IQ1_M",
	32: "MOSTLY_BF16",
	36: "MOSTLY_TQ1_0",
	37: "MOSTLY_TQ2_0",
	38: "MOSTLY_MXFP4_MOE",
}

// FileTypeName returns the llama.cpp name of a general.file_type value
// ("MOSTLY_Q4_K_M", ...), or "unknown(N)".
func FileTypeName(ft uint32) string {
	if name, ok := fileTypeNames[ft]; ok {
		return name
	}
	return fmt.Sprintf("unknown(%d)", ft)
}
