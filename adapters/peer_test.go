package adapters_test

// The PEFT export and import checked against PEFT itself: transformers
// loads the same GGUF base (undoing llama.cpp's q/k row permutation), PEFT
// applies the adapter, and the logits must be llama.cpp's. These tests need
// the Hugging Face references (scripts/install-pyref.sh) and skip loudly
// without them.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/llamatest"
	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

// peerTol is the bound of the issue: F32 bases, max |PEFT - llama.cpp|.
const peerTol = 1e-4

// hfTargets are the Hugging Face names of lora.Targets.
var hfTargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// peerWindows are n windows of ctx random tokens, each one example trained
// on every token.
func peerWindows(rng *rand.Rand, n, ctx, vocab int) []lora.Window {
	ws := make([]lora.Window, n)
	for i := range ws {
		w := lora.Window{Tokens: make([]int32, ctx), Weights: make([]float32, ctx), Pos: make([]int32, ctx), Seq: make([]int32, ctx)}
		for k := range w.Tokens {
			w.Tokens[k] = int32(3 + rng.IntN(vocab-3))
			w.Weights[k], w.Pos[k] = 1, int32(k)
		}
		w.Tokens[0] = 1
		ws[i] = w
	}
	return ws
}

type peerModel struct {
	name, path string
	vocab      int
}

// peerModels are the F32 bases of the proofs: stories260K (8 heads, 4 KV
// heads) and a two-layer test model with grouped-query attention.
func peerModels(t *testing.T) []peerModel {
	gqa := filepath.Join(t.TempDir(), "gqa.gguf")
	if err := testmodel.Write(gqa, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: "f32", Seed: 11}); err != nil {
		t.Fatal(err)
	}
	return []peerModel{
		{"stories260K", shared.Path(t, "models/stories260K.gguf"), 512},
		{"GQA testmodel", gqa, 259},
	}
}

// TestPeerPEFT proves the PEFT export and import against PEFT:
//
//   - export: an adapter trained by finetune on all seven projections, the
//     output head and the token embedding,
//     exported with ExportPEFT (`finetune export peft`) and loaded by PEFT
//     onto the transformers model of the same GGUF, gives llama.cpp's logits
//     with the GGUF adapter;
//   - import: an adapter trained a few steps by PEFT in torch (lm_head and
//     embed_tokens among its targets), imported with
//     ImportPEFT (`finetune export import-peft`), gives PEFT's logits in
//     llama.cpp.
//
// Both within peerTol on every logit of 48 positions. One Python process
// does all the Hugging Face side.
func TestPeerPEFT(t *testing.T) {
	pyref.Need(t)
	models := peerModels(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(14, 1))
	type work struct {
		peerModel
		tokens                       []int32
		gguf, exported, peftTrained  string
		baseOut, exportOut, peftOut  string
		peftLosses, importedGGUFPath string
	}
	var ws []*work
	var jobs []map[string]any
	for i, m := range models {
		w := &work{peerModel: m}
		d := filepath.Join(dir, fmt.Sprint(i))
		// finetune trains: 6 steps at a high rate, so that B is far from
		// zero and the adapter moves the logits.
		res, err := lora.Train(context.Background(), m.path, lora.Config{
			Targets: append(slices.Clone(lora.Targets), lora.ModelTargets...),
			Rank:    8, Alpha: 16, LearningRate: 2e-2, Schedule: "constant", MaxSteps: 6, Seed: 3, Threads: 2,
			Files: lora.Files{Checkpoint: filepath.Join(d, "ckpt.gguf"), Metrics: filepath.Join(d, "metrics.jsonl"), Adapter: filepath.Join(d, "adapter.gguf")},
		}, lora.Data{Train: peerWindows(rng, 4, 32, m.vocab)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.gguf = res.Adapter
		w.exported = filepath.Join(d, "peft-export")
		if err := adapters.ExportPEFT(w.gguf, m.path, w.exported, adapters.ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		w.tokens = peerWindows(rng, 1, 48, m.vocab)[0].Tokens
		w.peftTrained = filepath.Join(d, "peft-trained")
		w.baseOut, w.exportOut, w.peftOut = filepath.Join(d, "base.f32"), filepath.Join(d, "export.f32"), filepath.Join(d, "peft.f32")
		w.peftLosses = filepath.Join(d, "peft-losses.json")
		pw := peerWindows(rng, 2, 32, m.vocab)
		jw := make([]map[string]any, len(pw))
		for k, x := range pw {
			jw[k] = map[string]any{"tokens": x.Tokens, "weights": x.Weights, "pos": x.Pos, "seq": x.Seq}
		}
		jobs = append(jobs,
			map[string]any{"op": "logits", "gguf": m.path, "adapter": nil, "tokens": w.tokens, "out": w.baseOut},
			map[string]any{"op": "logits", "gguf": m.path, "adapter": w.exported, "tokens": w.tokens, "out": w.exportOut},
			map[string]any{"op": "train", "gguf": m.path, "targets": append(slices.Clone(hfTargets), "lm_head", "embed_tokens"), "r": 8, "alpha": 16, "lr": 2e-2,
				"weight_decay": 0.0, "betas": []float64{0.9, 0.999}, "eps": 1e-8, "clip": 1.0, "steps": 4, "schedule": "constant",
				"windows": jw, "grad_accum": 1, "seed": 5, "final_out": w.peftTrained, "losses_out": w.peftLosses},
			map[string]any{"op": "logits", "gguf": m.path, "adapter": w.peftTrained, "tokens": w.tokens, "out": w.peftOut})
		ws = append(ws, w)
	}
	pyref.Run(t, jobs)

	for _, w := range ws {
		T := len(w.tokens)
		base := llamatest.Logits(t, w.path, "", w.tokens)
		t.Run("base/"+w.name, func(t *testing.T) {
			d := pyref.MaxAbsDiff(t, pyref.ReadLogits(t, w.baseOut, T), base)
			t.Logf("%s without adapter: max |transformers - llama.cpp| = %.2e", w.name, d)
			if d > peerTol {
				t.Errorf("%s without adapter: max |transformers - llama.cpp| = %g > %g: the bases differ before any adapter", w.name, d, peerTol)
			}
		})
		t.Run("export/"+w.name, func(t *testing.T) {
			want := llamatest.Logits(t, w.path, w.gguf, w.tokens)
			got := pyref.ReadLogits(t, w.exportOut, T)
			moved := pyref.MaxAbsDiff(t, want, base)
			if moved < 0.05 {
				t.Fatalf("the trained adapter moves llama.cpp's logits by only %g: the test would prove nothing", moved)
			}
			d := pyref.MaxAbsDiff(t, got, want)
			t.Logf("%s: max |PEFT(export) - llama.cpp(GGUF adapter)| = %.2e over %d×%d logits (the adapter moves them by %.2f)", w.name, d, T, len(want[0]), moved)
			if d > peerTol {
				t.Errorf("%s: PEFT with the exported adapter differs from llama.cpp with the GGUF adapter by %g > %g", w.name, d, peerTol)
			}
		})
		t.Run("import/"+w.name, func(t *testing.T) {
			imported := filepath.Join(t.TempDir(), "imported.gguf")
			if err := adapters.ImportPEFT(w.peftTrained, w.path, imported); err != nil {
				t.Fatal(err)
			}
			want := pyref.ReadLogits(t, w.peftOut, T)
			got := llamatest.Logits(t, w.path, imported, w.tokens)
			moved := pyref.MaxAbsDiff(t, want, pyref.ReadLogits(t, w.baseOut, T))
			if moved < 0.05 {
				t.Fatalf("the PEFT-trained adapter moves PEFT's logits by only %g: the test would prove nothing", moved)
			}
			d := pyref.MaxAbsDiff(t, got, want)
			t.Logf("%s: max |llama.cpp(imported) - PEFT| = %.2e over %d×%d logits (the adapter moves them by %.2f)", w.name, d, T, len(want[0]), moved)
			if d > peerTol {
				t.Errorf("%s: llama.cpp with the imported adapter differs from PEFT by %g > %g", w.name, d, peerTol)
			}
		})
	}
}
