package lora

import (
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

func TestEstimateMemoryScales(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	a, err := EstimateMemory(model, 256, MemoryOptions{Rank: 8})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EstimateMemory(model, 1024, MemoryOptions{Rank: 8})
	if a.WholeWindow <= 64<<20 || b.WholeWindow <= a.WholeWindow || b.Checkpointed <= a.Checkpointed {
		t.Fatalf("estimates %+v (ctx 256) and %+v (ctx 1024)", a, b)
	}
	if b.Checkpointed >= b.WholeWindow {
		t.Fatalf("checkpointing needs no less memory: %+v", b)
	}
	if c, _ := b.Choose("auto", 100<<30); c {
		t.Error("auto checkpoints a tiny model on a machine of 100 GiB")
	}
	if c, need := b.Choose("auto", b.WholeWindow); !c || need != b.Checkpointed {
		t.Error("auto keeps every activation when they take all the memory")
	}
	if err := CheckBase(model); err != nil {
		t.Fatal(err)
	}
}
