package gguf

import (
	"encoding/binary"
	"math"
)

// F32Data encodes float32 values as the data of an F32 tensor
// (little-endian).
func F32Data(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// F32Values decodes the data of an F32 tensor.
func F32Values(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}
