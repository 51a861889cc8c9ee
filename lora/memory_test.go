package lora

import (
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

func TestEstimateMemoryScales(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	a, err := EstimateMemory(model, 256, 8, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EstimateMemory(model, 1024, 8, 7)
	if a <= 64<<20 || b <= a {
		t.Fatalf("estimates %d (ctx 256) and %d (ctx 1024)", a, b)
	}
	if err := CheckBase(model); err != nil {
		t.Fatal(err)
	}
}
