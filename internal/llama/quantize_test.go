package llama

import (
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/shared"
)

func TestFileTypes(t *testing.T) {
	for _, n := range FileTypeNames() {
		ft, err := ParseFileType(strings.ToUpper(n))
		if err != nil || ft.String() != n {
			t.Fatalf("ParseFileType(%q) = %v, %v", n, ft, err)
		}
	}
	if _, err := ParseFileType("q4_k"); err == nil || !strings.Contains(err.Error(), "q4_k_m") {
		t.Fatalf("q4_k: %v", err)
	}
	for file, want := range map[string]FileType{"models/stories260K.gguf": FileTypeF32, "models/llama-2-tiny-random.gguf": FileTypeF16} {
		f, err := gguf.Open(shared.Path(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := FileTypeOf(f); err != nil || got != want {
			t.Fatalf("%s: FileTypeOf = %v, %v; want %v", file, got, err, want)
		}
	}
}
