package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
)

// FileType is a model's file type (llama.cpp's enum llama_ftype, stored as
// general.file_type): the type most of its weights are in, and for the
// K-quant mixes the rule that picks each tensor's type.
type FileType uint32

// The file types Quantize writes.
const (
	FileTypeF32    FileType = C.LLAMA_FTYPE_ALL_F32
	FileTypeF16    FileType = C.LLAMA_FTYPE_MOSTLY_F16
	FileTypeBF16   FileType = C.LLAMA_FTYPE_MOSTLY_BF16
	FileTypeQ8_0   FileType = C.LLAMA_FTYPE_MOSTLY_Q8_0
	FileTypeQ4_0   FileType = C.LLAMA_FTYPE_MOSTLY_Q4_0
	FileTypeQ4_1   FileType = C.LLAMA_FTYPE_MOSTLY_Q4_1
	FileTypeQ5_0   FileType = C.LLAMA_FTYPE_MOSTLY_Q5_0
	FileTypeQ5_1   FileType = C.LLAMA_FTYPE_MOSTLY_Q5_1
	FileTypeQ6_K   FileType = C.LLAMA_FTYPE_MOSTLY_Q6_K
	FileTypeQ5_K_M FileType = C.LLAMA_FTYPE_MOSTLY_Q5_K_M
	FileTypeQ5_K_S FileType = C.LLAMA_FTYPE_MOSTLY_Q5_K_S
	FileTypeQ4_K_M FileType = C.LLAMA_FTYPE_MOSTLY_Q4_K_M
	FileTypeQ4_K_S FileType = C.LLAMA_FTYPE_MOSTLY_Q4_K_S
	FileTypeQ3_K_M FileType = C.LLAMA_FTYPE_MOSTLY_Q3_K_M
)

var fileTypeNames = map[FileType]string{
	FileTypeF32: "f32", FileTypeF16: "f16", FileTypeBF16: "bf16", FileTypeQ8_0: "q8_0",
	FileTypeQ4_0: "q4_0", FileTypeQ4_1: "q4_1", FileTypeQ5_0: "q5_0", FileTypeQ5_1: "q5_1",
	FileTypeQ6_K: "q6_k", FileTypeQ5_K_M: "q5_k_m", FileTypeQ5_K_S: "q5_k_s",
	FileTypeQ4_K_M: "q4_k_m", FileTypeQ4_K_S: "q4_k_s", FileTypeQ3_K_M: "q3_k_m",
}

// FileTypeNames lists the names ParseFileType accepts, largest files first.
func FileTypeNames() []string {
	return []string{"f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s", "q4_1", "q4_0", "q3_k_m"}
}

// String is the file type's name as finetune's flags spell it ("q4_k_m").
func (t FileType) String() string {
	if n, ok := fileTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("file_type(%d)", uint32(t))
}

// ParseFileType reads a file type's name, in any case ("Q4_K_M").
func ParseFileType(name string) (FileType, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for t, s := range fileTypeNames {
		if s == n {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (use %s)", name, strings.Join(FileTypeNames(), ", "))
}

// weightFileType maps a tensor type to the file type that stores most
// weights in it (a K-quant maps to its "_M" mix, the one llama.cpp and
// Ollama publish by default).
var weightFileType = map[ggml.Type]FileType{
	ggml.TypeF32: FileTypeF32, ggml.TypeF16: FileTypeF16, ggml.TypeBF16: FileTypeBF16,
	ggml.TypeQ8_0: FileTypeQ8_0, ggml.TypeQ4_0: FileTypeQ4_0,
	ggml.Type(C.GGML_TYPE_Q4_1): FileTypeQ4_1, ggml.Type(C.GGML_TYPE_Q5_0): FileTypeQ5_0,
	ggml.Type(C.GGML_TYPE_Q5_1): FileTypeQ5_1, ggml.Type(C.GGML_TYPE_Q6_K): FileTypeQ6_K,
	ggml.Type(C.GGML_TYPE_Q5_K): FileTypeQ5_K_M, ggml.Type(C.GGML_TYPE_Q4_K): FileTypeQ4_K_M,
	ggml.Type(C.GGML_TYPE_Q3_K): FileTypeQ3_K_M,
}

// FileTypeOf is the file type of a model: its general.file_type when that
// is one Quantize writes, else the type most of its 2-D weights (by
// count of values) are stored in.
func FileTypeOf(f *gguf.File) (FileType, error) {
	if v, ok := f.Uint("general.file_type"); ok {
		if _, ok := fileTypeNames[FileType(v)]; ok {
			return FileType(v), nil
		}
	}
	count := map[ggml.Type]uint64{}
	for _, t := range f.Tensors {
		if len(t.Dims) != 2 {
			continue
		}
		count[ggml.Type(t.Type)] += t.Dims[0] * t.Dims[1]
	}
	types := make([]ggml.Type, 0, len(count))
	for t := range count {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return count[types[i]] > count[types[j]] })
	for _, t := range types {
		if ft, ok := weightFileType[t]; ok {
			return ft, nil
		}
	}
	return 0, fmt.Errorf("%s: cannot tell the model's type (no general.file_type, and no 2-D weights of a known type)", f.Path)
}

// QuantizeOptions tune Quantize.
type QuantizeOptions struct {
	// Threads quantizing (0: 1).
	Threads int
}

// Quantize writes the model at in to out as file type t with llama.cpp's
// own quantizer (llama_model_quantize): each tensor's type is the one
// llama.cpp picks for t (the K-quant mixes keep some tensors at higher
// precision; rows a block type cannot hold fall back as llama.cpp decides),
// tensors already of that type are copied, other quantized tensors are
// dequantized and quantized again, and all metadata, the vocabulary and the
// chat template are copied, with general.file_type set to t. out is
// written in place; on failure it is removed.
func Quantize(in, out string, t FileType, opts QuantizeOptions) error {
	Init()
	if _, ok := fileTypeNames[t]; !ok {
		return fmt.Errorf("quantize: unsupported file type %d", uint32(t))
	}
	if _, err := OpenGGUF(in); err != nil {
		return err
	}
	p := C.llama_model_quantize_default_params()
	p.nthread = C.int32_t(max(opts.Threads, 1))
	p.ftype = C.enum_llama_ftype(t)
	p.allow_requantize = true
	p.quantize_output_tensor = true
	cin, freeIn := cstr(in)
	defer freeIn()
	cout, freeOut := cstr(out)
	defer freeOut()
	ggml.TakeMessages()
	if rc := C.llama_model_quantize(cin, cout, &p); rc != 0 {
		os.Remove(out)
		return &QuantizeError{In: in, Type: t, Reason: quantizeReason(ggml.TakeMessages())}
	}
	ggml.TakeMessages()
	return nil
}

// QuantizeError is Quantize's error when llama.cpp refuses: Reason is what
// llama.cpp logged about why.
type QuantizeError struct {
	In     string
	Type   FileType
	Reason string
}

func (e *QuantizeError) Error() string {
	return fmt.Sprintf("%s: llama.cpp could not quantize the model to %s: %s", e.In, e.Type, e.Reason)
}

// quantizeReason keeps the lines of llama.cpp's log that say why a
// quantization failed, without the progress lines around them.
func quantizeReason(lines []string) string {
	var why []string
	for _, l := range lines {
		for _, part := range strings.Split(l, "\n") {
			part = strings.TrimSpace(part)
			for _, marker := range []string{"llama_tensor_get_type : ", "failed to quantize: "} {
				if i := strings.Index(part, marker); i >= 0 {
					part = strings.TrimSpace(part[i+len(marker):])
					if j := strings.Index(part, "llama_model_quantize:"); j >= 0 {
						part = strings.TrimSpace(part[:j])
					}
					if part != "" {
						why = append(why, part)
					}
				}
			}
		}
	}
	if len(why) == 0 {
		return strings.Join(lines, "; ")
	}
	return strings.Join(why, "; ")
}
