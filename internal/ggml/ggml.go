// Package ggml is finetune's cgo binding to the ggml library bundled in the
// github.com/ollama/ollama module: backend and device discovery, the CPU
// features the build was compiled with, quantization, GGUF parsing by ggml's
// own code, and the routing of ggml's and llama.cpp's log output.
//
// Declarations come from internal/capi/capi.h; the C code is compiled by the
// ollama module's ggml package, imported here for its symbols.
package ggml

/*
#cgo CPPFLAGS: -I${SRCDIR}/../capi
#cgo linux LDFLAGS: -rdynamic -ldl
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"
)

// Type is a ggml tensor type (enum ggml_type).
type Type int32

// The tensor types finetune creates itself.
const (
	TypeF32  Type = C.GGML_TYPE_F32
	TypeF16  Type = C.GGML_TYPE_F16
	TypeQ4_0 Type = C.GGML_TYPE_Q4_0
	TypeQ4_1 Type = C.GGML_TYPE_Q4_1
	TypeQ8_0 Type = C.GGML_TYPE_Q8_0
	TypeBF16 Type = C.GGML_TYPE_BF16
	TypeI32  Type = C.GGML_TYPE_I32
)

// String returns ggml's own name of the type ("f32", "q4_0", ...).
func (t Type) String() string {
	if t < 0 || t >= C.GGML_TYPE_COUNT {
		return fmt.Sprintf("type(%d)", int32(t))
	}
	name := C.ggml_type_name(C.enum_ggml_type(t))
	if name == nil {
		return fmt.Sprintf("type(%d)", int32(t))
	}
	return C.GoString(name)
}

// BlockSize is the number of values in one block of the type.
func (t Type) BlockSize() int { return int(C.ggml_blck_size(C.enum_ggml_type(t))) }

// RowSize is the number of bytes of a row of n values.
func (t Type) RowSize(n int) int { return int(C.ggml_row_size(C.enum_ggml_type(t), C.int64_t(n))) }

// Encode converts rows of float32 values (nPerRow values a row) to type t
// with ggml's own conversion and quantization code.
func Encode(t Type, src []float32, nPerRow int) ([]byte, error) {
	if nPerRow <= 0 || len(src)%nPerRow != 0 {
		return nil, fmt.Errorf("ggml: %d values do not form rows of %d", len(src), nPerRow)
	}
	if bs := t.BlockSize(); nPerRow%bs != 0 {
		return nil, fmt.Errorf("ggml: a row of %d values cannot be stored as %s, whose blocks hold %d values", nPerRow, t, bs)
	}
	nrows := len(src) / nPerRow
	out := make([]byte, nrows*t.RowSize(nPerRow))
	if len(src) == 0 {
		return out, nil
	}
	switch t {
	case TypeF32:
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), len(src)*4))
		return out, nil
	case TypeF16:
		C.ggml_fp32_to_fp16_row((*C.float)(&src[0]), (*C.ggml_fp16_t)(unsafe.Pointer(&out[0])), C.int64_t(len(src)))
		return out, nil
	}
	if C.ggml_quantize_requires_imatrix(C.enum_ggml_type(t)) {
		return nil, fmt.Errorf("ggml: quantizing to %s needs an importance matrix", t)
	}
	n := C.ggml_quantize_chunk(C.enum_ggml_type(t), (*C.float)(&src[0]), unsafe.Pointer(&out[0]), 0, C.int64_t(nrows), C.int64_t(nPerRow), nil)
	if int(n) != len(out) {
		return nil, fmt.Errorf("ggml: quantizing to %s wrote %d bytes, expected %d", t, int(n), len(out))
	}
	return out, nil
}

// ValidRowData reports whether data holds finite values of type t (ggml's
// own check, the one llama.cpp runs with check_tensors).
func ValidRowData(t Type, data []byte) bool {
	if len(data) == 0 {
		return true
	}
	return bool(C.ggml_validate_row_data(C.enum_ggml_type(t), unsafe.Pointer(&data[0]), C.size_t(len(data))))
}

// DeviceType says what kind of device ggml found.
type DeviceType int

// Device types, as ggml names them.
const (
	DeviceCPU DeviceType = iota
	DeviceGPU
	DeviceIGPU
	DeviceAccel
)

func (t DeviceType) String() string {
	switch t {
	case DeviceCPU:
		return "CPU"
	case DeviceGPU:
		return "GPU"
	case DeviceIGPU:
		return "iGPU"
	case DeviceAccel:
		return "accelerator"
	}
	return fmt.Sprintf("device-type(%d)", int(t))
}

// Device is one compute device ggml's backend registry knows.
type Device struct {
	Name         string
	Description  string
	Backend      string // the registry that provides it: "CPU", "CUDA", ...
	Type         DeviceType
	MemoryFree   uint64
	MemoryTotal  uint64
	ComputeMajor int
	ComputeMinor int
	Library      string // ggml's name of the library kind ("CUDA"); may be empty
	Path         string // the backend library file it came from; empty when built in
}

// Devices lists the devices of every registered backend.
func Devices() []Device {
	var out []Device
	for i := C.size_t(0); i < C.ggml_backend_dev_count(); i++ {
		out = append(out, deviceOf(C.ggml_backend_dev_get(i)))
	}
	return out
}

func deviceOf(dev C.ggml_backend_dev_t) Device {
	var props C.struct_ggml_backend_dev_props
	C.ggml_backend_dev_get_props(dev, &props)
	return Device{
		Name:         goString(props.name),
		Description:  goString(props.description),
		Backend:      goString(C.ggml_backend_reg_name(C.ggml_backend_dev_backend_reg(dev))),
		Type:         DeviceType(props._type),
		MemoryFree:   uint64(props.memory_free),
		MemoryTotal:  uint64(props.memory_total),
		ComputeMajor: int(props.compute_major),
		ComputeMinor: int(props.compute_minor),
		Library:      goString(props.library),
		Path:         libraryPath(goString(C.ggml_backend_reg_name(C.ggml_backend_dev_backend_reg(dev)))),
	}
}

// Backends lists the names of the registered backends ("CPU", ...).
func Backends() []string {
	var out []string
	for i := C.size_t(0); i < C.ggml_backend_reg_count(); i++ {
		out = append(out, goString(C.ggml_backend_reg_name(C.ggml_backend_reg_get(i))))
	}
	return out
}

func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}
