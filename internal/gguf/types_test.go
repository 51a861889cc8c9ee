package gguf

import (
	"fmt"
	"strings"
	"testing"
)

func TestTensorTypes(t *testing.T) {
	// ggml's type_traits: name, block size, bytes per block.
	want := []struct {
		t           TensorType
		id          uint32
		name        string
		block, size int
	}{
		{F32, 0, "F32", 1, 4}, {F16, 1, "F16", 1, 2}, {Q4_0, 2, "Q4_0", 32, 18}, {Q4_1, 3, "Q4_1", 32, 20},
		{Q5_0, 6, "Q5_0", 32, 22}, {Q5_1, 7, "Q5_1", 32, 24}, {Q8_0, 8, "Q8_0", 32, 34}, {Q8_1, 9, "Q8_1", 32, 36},
		{Q2_K, 10, "Q2_K", 256, 84}, {Q3_K, 11, "Q3_K", 256, 110}, {Q4_K, 12, "Q4_K", 256, 144},
		{Q5_K, 13, "Q5_K", 256, 176}, {Q6_K, 14, "Q6_K", 256, 210}, {Q8_K, 15, "Q8_K", 256, 292},
		{IQ2_XXS, 16, "IQ2_XXS", 256, 66}, {IQ2_XS, 17, "IQ2_XS", 256, 74}, {IQ3_XXS, 18, "IQ3_XXS", 256, 98},
		{IQ1_S, 19, "IQ1_S", 256, 50}, {IQ4_NL, 20, "IQ4_NL", 32, 18}, {IQ3_S, 21, "IQ3_S", 256, 110},
		{IQ2_S, 22, "IQ2_S", 256, 82}, {IQ4_XS, 23, "IQ4_XS", 256, 136}, {I8, 24, "I8", 1, 1}, {I16, 25, "I16", 1, 2},
		{I32, 26, "I32", 1, 4}, {I64, 27, "I64", 1, 8}, {F64, 28, "F64", 1, 8}, {IQ1_M, 29, "IQ1_M", 256, 56},
		{BF16, 30, "BF16", 1, 2}, {TQ1_0, 34, "TQ1_0", 256, 54}, {TQ2_0, 35, "TQ2_0", 256, 66}, {MXFP4, 39, "MXFP4", 32, 17},
	}
	if len(want) != len(tensorTypes) {
		t.Errorf("%d types known, %d tested", len(tensorTypes), len(want))
	}
	for _, w := range want {
		if uint32(w.t) != w.id || w.t.String() != w.name {
			t.Errorf("%s: id %d name %q, want %d %q", w.name, uint32(w.t), w.t.String(), w.id, w.name)
		}
		if b, ok := w.t.BlockSize(); !ok || b != w.block {
			t.Errorf("%s.BlockSize() = %d, %v; want %d", w.name, b, ok, w.block)
		}
		if s, ok := w.t.TypeSize(); !ok || s != w.size {
			t.Errorf("%s.TypeSize() = %d, %v; want %d", w.name, s, ok, w.size)
		}
		for _, s := range []string{w.name, strings.ToLower(w.name)} {
			if p, err := ParseTensorType(s); err != nil || p != w.t {
				t.Errorf("ParseTensorType(%q) = %v, %v", s, p, err)
			}
		}
		if rs, err := RowSize(w.t, uint64(w.block)*3); err != nil || rs != uint64(w.size)*3 {
			t.Errorf("RowSize(%s, 3 blocks) = %d, %v", w.name, rs, err)
		}
	}
}

func TestUnknownTensorType(t *testing.T) {
	for _, id := range []TensorType{4, 31, 40, 99} {
		if s := id.String(); s != fmt.Sprintf("type(%d)", uint32(id)) {
			t.Errorf("String() = %q", s)
		}
		if _, ok := id.BlockSize(); ok {
			t.Errorf("%d.BlockSize() ok", id)
		}
		if _, ok := id.TypeSize(); ok {
			t.Errorf("%d.TypeSize() ok", id)
		}
		if _, err := RowSize(id, 32); err == nil {
			t.Errorf("RowSize(%d) succeeded", id)
		}
	}
	if _, err := ParseTensorType("q9_0"); err == nil || !strings.Contains(err.Error(), `"q9_0"`) || !strings.Contains(err.Error(), "Q4_K") {
		t.Errorf("ParseTensorType(q9_0): %v", err)
	}
}

func TestRowSize(t *testing.T) {
	if rs, err := RowSize(Q4_K, 4096); err != nil || rs != 16*144 {
		t.Errorf("RowSize(Q4_K, 4096) = %d, %v", rs, err)
	}
	if _, err := RowSize(Q4_K, 100); err == nil || !strings.Contains(err.Error(), "block size (256)") {
		t.Errorf("RowSize(Q4_K, 100): %v", err)
	}
	if _, err := RowSize(F64, 1<<62); err == nil {
		t.Error("RowSize overflow not detected")
	}
	if rs, err := RowSize(F16, 0); err != nil || rs != 0 {
		t.Errorf("RowSize(F16, 0) = %d, %v", rs, err)
	}
}

func TestFileTypeName(t *testing.T) {
	for ft, want := range map[uint32]string{
		0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 7: "MOSTLY_Q8_0", 12: "MOSTLY_Q3_K_M", 15: "MOSTLY_Q4_K_M",
		18: "MOSTLY_Q6_K", 24: "MOSTLY_IQ1_S", 32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0", 38: "MOSTLY_MXFP4_MOE",
		5: "unknown(5)", 33: "unknown(33)", 1024: "unknown(1024)",
	} {
		if got := FileTypeName(ft); got != want {
			t.Errorf("FileTypeName(%d) = %q, want %q", ft, got, want)
		}
	}
}

func TestValueTypeString(t *testing.T) {
	for v, want := range map[ValueType]string{TypeUint8: "UINT8", TypeFloat32: "FLOAT32", TypeArray: "ARRAY", TypeFloat64: "FLOAT64", 13: "ValueType(13)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint32(v), got, want)
		}
	}
}
