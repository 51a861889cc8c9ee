package lora

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// TestTransposedInputGradients compares the gradients computed with the
// transposed-weight rewrite against ggml's own out_prod formulation (with
// an F32 cast for F16, which out_prod cannot take), on F16, Q8_0 and Q4_0
// test models. ggml's mul_mat rounds its second operand to the weight's dot
// type (F16, or Q8_0 for quantized weights, as in every forward pass), and
// quantized weights are transposed into Q8_0: the gradients move by about
// 0.1% (F16) and 1.6% (Q8_0, Q4_0).
func TestTransposedInputGradients(t *testing.T) {
	for _, c := range []struct {
		typ string
		tol float64 // relative to the gradient's norm
	}{{"f16", 3e-3}, {"q8_0", 3e-2}, {"q4_0", 3e-2}} {
		t.Run(c.typ, func(t *testing.T) {
			model := filepath.Join(t.TempDir(), "m.gguf")
			if err := testmodel.Write(model, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: c.typ, Seed: 4}); err != nil {
				t.Fatal(err)
			}
			grads := func(noTranspose, checkpoint bool) []float32 {
				base, err := OpenBase(model)
				if err != nil {
					t.Fatal(err)
				}
				defer base.Close()
				e, err := newEngine(base, Targets, 4, 2, 0, 32, 1)
				if err != nil {
					t.Fatal(err)
				}
				defer e.close()
				e.noTranspose, e.checkpoint = noTranspose, checkpoint
				e.allRows = true // the graph as run below
				p := initParams(e, 4, 8, 2, 5)
				rng := rand.New(rand.NewPCG(1, 1))
				for i := range p.Pairs {
					for j := range p.Pairs[i].B {
						p.Pairs[i].B[j] = float32(rng.NormFloat64() * 0.1)
					}
				}
				e.setParams(p)
				w := singleWindow(randomTokens(rng, 32, base.Hyper.VocabSize))
				var in inputs
				e.prepare(w, &in, true)
				gA, gB := zeroGrads(e)
				if _, err := e.trainWindow(&in, in.targets, 0, gA, gB); err != nil {
					t.Fatal(err)
				}
				var all []float32
				for i := range e.pairs {
					all = append(all, gA[i]...)
					all = append(all, gB[i]...)
				}
				return all
			}
			ref := grads(true, false)
			for _, checkpoint := range []bool{false, true} {
				fast := grads(false, checkpoint)
				var diff, norm float64
				for i := range ref {
					d := float64(fast[i] - ref[i])
					diff += d * d
					norm += float64(ref[i]) * float64(ref[i])
				}
				rel := math.Sqrt(diff / norm)
				t.Logf("%s (checkpointed %v): |g_transposed - g_out_prod| / |g| = %.2e", c.typ, checkpoint, rel)
				if rel > c.tol || norm == 0 {
					t.Fatalf("relative gradient difference %.3g > %g", rel, c.tol)
				}
			}
		})
	}
}

// TestTransposeInBlocks: a weight transposed a few columns at a time is
// the weight transposed at once, byte for byte, for float and quantized
// types.
func TestTransposeInBlocks(t *testing.T) {
	for _, typ := range []string{"f32", "f16", "q8_0", "q4_0"} {
		t.Run(typ, func(t *testing.T) {
			model := filepath.Join(t.TempDir(), "m.gguf")
			if err := testmodel.Write(model, testmodel.Config{Layers: 1, Embd: 128, Heads: 4, KVHeads: 2, FF: 256, Type: typ, Seed: 2}); err != nil {
				t.Fatal(err)
			}
			_, e := openEngine(t, model, Targets, 2, 16)
			w, _, _ := e.base.Weight(0, "ffn_down") // [256, 128]
			transposed := func(block int) []byte {
				old := transposeBlock
				transposeBlock = block
				defer func() { transposeBlock = old }()
				x, err := ggml.NewCtx(4*ggml.TensorOverhead(), true)
				if err != nil {
					t.Fatal(err)
				}
				defer x.Close()
				dst := x.New2D(transposeType(w), w.Ne(1), w.Ne(0))
				buf, err := x.AllocTensors(e.backend)
				if err != nil {
					t.Fatal(err)
				}
				defer buf.Close()
				if err := e.transposeInto(w, dst); err != nil {
					t.Fatal(err)
				}
				return dst.GetBytes()
			}
			whole, blocks := transposed(1<<30), transposed(1)
			if len(whole) == 0 || !bytes.Equal(whole, blocks) {
				t.Fatalf("transposed in blocks of one quantization block, %d bytes differ from the weight transposed at once", len(whole))
			}
		})
	}
}

// transposeType is a type for a weight's transposed copy that exercises
// transposeInto's blocks: the weight's own for float types, else Q8_0 (F16
// when rows do not split into its blocks), as the copies were made before
// they became F32 or BF16.
func transposeType(w ggml.Tensor) ggml.Type {
	switch w.Type() {
	case ggml.TypeF32, ggml.TypeF16, ggml.TypeBF16:
		return w.Type()
	}
	if w.Ne(1)%ggml.TypeQ8_0.BlockSize() == 0 {
		return ggml.TypeQ8_0
	}
	return ggml.TypeF16
}
