package lora

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// gpuDevice is the first GPU of the backend libraries in FINETUNE_LIB_PATH
// (make cuda), or the device FINETUNE_TEST_DEVICE names; else the test is
// skipped, loudly.
func gpuDevice(t *testing.T) string {
	ggml.LoadBackends(filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH")))
	spec := "auto"
	if v := os.Getenv("FINETUNE_TEST_DEVICE"); v != "" {
		spec = v // another device ("BLAS"), to try these tests without a GPU
	}
	name, err := ggml.PickDevice(spec)
	if err != nil || name == "" {
		msg := fmt.Sprintf("SKIP %s: no GPU (build the CUDA backend with make cuda and set FINETUNE_LIB_PATH; libraries: %+v)", t.Name(), ggml.Libraries())
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	return name
}

// TestGPULogitsAndAdapter, on a GPU: the engine's logits there equal
// llama.cpp's on the CPU (stories260K, an F16 and a Q8_0 test model), and an
// adapter trained on the GPU, loaded by llama.cpp on the CPU, gives the
// engine's logits with it, within 1e-2.
func TestGPULogitsAndAdapter(t *testing.T) {
	name := gpuDevice(t)
	dir := t.TempDir()
	models := map[string]string{"stories260K": shared.Path(t, "models/stories260K.gguf")}
	for _, typ := range []string{"f16", "q8_0"} {
		p := filepath.Join(dir, typ+".gguf")
		if err := testmodel.Write(p, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: typ, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		models["testmodel "+typ] = p
	}
	for label, model := range models {
		t.Run("logits/"+label, func(t *testing.T) {
			base, err := OpenBase(model)
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			dev, err := ggml.NewDeviceBackend(name)
			if err != nil {
				t.Fatal(err)
			}
			e, err := newEngineOn(dev, base, Targets, 4, 2, 0, 64, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer e.close()
			tokens := randomTokens(rand.New(rand.NewPCG(1, 1)), 64, base.Hyper.VocabSize)
			got := engineLogits(t, e, singleWindow(tokens), false)
			d := maxAbsDiff(got, llamatest.Logits(t, model, "", tokens))
			t.Logf("%s on %s: max |engine - llama.cpp on the CPU| = %.2e", label, name, d)
			if d > 1e-2 {
				t.Fatalf("max |engine on %s - llama.cpp on the CPU| = %g, want <= 1e-2", name, d)
			}
		})
	}
	t.Run("adapter trained on the GPU", func(t *testing.T) {
		model := models["stories260K"]
		res, err := Train(context.Background(), model, Config{Device: name, Rank: 8, Alpha: 16, LearningRate: 1e-2, MaxSteps: 30, Seed: 1, Threads: 1, Files: filesIn(t.TempDir())},
			Data{Train: pack(qaExamples(t, model), 128)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := adapters.Read(res.Adapter)
		if err != nil {
			t.Fatal(err)
		}
		base, err := OpenBase(model)
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		e, err := newEngine(base, Targets, 8, l.Alpha/8, 0, 64, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		p := initParams(e, 8, float64(l.Alpha), l.Alpha/8, 1)
		byName := map[string]adapters.Pair{}
		for _, q := range l.Pairs {
			byName[q.Base] = q
		}
		for i, q := range p.Pairs {
			p.Pairs[i].A, p.Pairs[i].B = byName[WeightName(q.Layer, q.Target)].A, byName[WeightName(q.Layer, q.Target)].B
		}
		e.setParams(p)
		tokens := randomTokens(rand.New(rand.NewPCG(2, 2)), 64, base.Hyper.VocabSize)
		w := singleWindow(tokens)
		got, plain := engineLogits(t, e, w, true), engineLogits(t, e, w, false)
		d := maxAbsDiff(got, llamatest.Logits(t, model, res.Adapter, tokens))
		t.Logf("adapter trained on %s: moves the logits by %.2f; max |engine - llama.cpp on the CPU| = %.2e", name, maxAbsDiff(got, plain), d)
		if d > 1e-2 {
			t.Fatalf("the adapter trained on %s gives llama.cpp on the CPU logits %g from the engine's, want <= 1e-2", name, d)
		}
	})
}
