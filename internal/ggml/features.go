package ggml

/*
#include "capi.h"
*/
import "C"

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

// Feature is one CPU instruction-set extension that ggml's CPU kernels use.
type Feature struct {
	Name      string
	Compiled  bool // ggml's CPU backend was compiled to use it
	Available bool // this CPU offers it
}

// Features lists the x86 extensions that matter for ggml's speed, with
// whether the build uses them and whether the CPU has them. On other
// architectures it returns nil.
func Features() []Feature {
	if runtime.GOARCH != "amd64" {
		return nil
	}
	x := cpu.X86
	avx512 := x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512DQ
	return []Feature{
		{"SSE3", C.ggml_cpu_has_sse3() != 0, x.HasSSE3},
		{"SSSE3", C.ggml_cpu_has_ssse3() != 0, x.HasSSSE3},
		{"AVX", C.ggml_cpu_has_avx() != 0, x.HasAVX},
		{"AVX2", C.ggml_cpu_has_avx2() != 0, x.HasAVX2},
		{"FMA", C.ggml_cpu_has_fma() != 0, x.HasFMA},
		{"F16C", C.ggml_cpu_has_f16c() != 0, hasF16C()},
		{"BMI2", C.ggml_cpu_has_bmi2() != 0, x.HasBMI2},
		{"AVX_VNNI", C.ggml_cpu_has_avx_vnni() != 0, x.HasAVXVNNI},
		{"AVX512", C.ggml_cpu_has_avx512() != 0, avx512},
		{"AVX512_VBMI", C.ggml_cpu_has_avx512_vbmi() != 0, x.HasAVX512VBMI},
		{"AVX512_VNNI", C.ggml_cpu_has_avx512_vnni() != 0, x.HasAVX512VNNI},
		{"AVX512_BF16", C.ggml_cpu_has_avx512_bf16() != 0, x.HasAVX512BF16},
	}
}

// MissingSIMD lists the extensions this CPU has that the build does not use.
func MissingSIMD() []string {
	var missing []string
	for _, f := range Features() {
		if f.Available && !f.Compiled {
			missing = append(missing, f.Name)
		}
	}
	return missing
}

// Llamafile reports whether ggml's llamafile sgemm kernels are compiled in.
func Llamafile() bool { return C.ggml_cpu_has_llamafile() != 0 }

// NativeBF16 reports whether ggml's CPU kernels compute BF16 dot products
// with the CPU's own instructions: the build uses AVX512_BF16 and this CPU
// has it.
func NativeBF16() bool {
	return runtime.GOARCH == "amd64" && C.ggml_cpu_has_avx512_bf16() != 0 && cpu.X86.HasAVX512BF16
}
