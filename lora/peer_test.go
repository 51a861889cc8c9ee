package lora_test

// Training checked against PEFT in torch: the same initial A and B, the
// same packed windows and loss masks, AdamW with the same hyper-parameters,
// schedule and clipping; after 10 steps the loss curves and the adapters
// must agree. Needs the references of scripts/install-pyref.sh; skips
// loudly without them.

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

// The bounds of the issue, F32 bases: relative difference of each step's
// loss, and of each adapter tensor (Frobenius norm of the difference over
// that of PEFT's tensor) after the last step.
const (
	peerLossTol    = 1e-4
	peerAdapterTol = 1e-3
)

// packedWindows are two windows of ctx tokens: one packing two examples,
// each with an untrained prompt, and padding; one a single example trained
// on every token but the first.
func packedWindows(rng *rand.Rand, ctx, vocab int) []lora.Window {
	tok := func() int32 { return int32(3 + rng.IntN(vocab-3)) }
	a := lora.Window{Tokens: make([]int32, ctx), Weights: make([]float32, ctx), Pos: make([]int32, ctx), Seq: make([]int32, ctx)}
	half := (ctx - 4) / 2
	for i := range a.Tokens {
		a.Tokens[i] = tok()
		switch {
		case i < half:
			a.Seq[i], a.Pos[i] = 0, int32(i)
			if i >= 5 {
				a.Weights[i] = 1
			}
		case i < 2*half:
			a.Seq[i], a.Pos[i] = 1, int32(i-half)
			if i-half >= 3 {
				a.Weights[i] = 1
			}
		default: // padding
			a.Seq[i], a.Pos[i], a.Tokens[i] = -1, 0, 0
		}
	}
	a.Tokens[0], a.Tokens[half] = 1, 1
	b := lora.Window{Tokens: make([]int32, ctx), Weights: make([]float32, ctx), Pos: make([]int32, ctx), Seq: make([]int32, ctx)}
	for i := range b.Tokens {
		b.Tokens[i], b.Pos[i], b.Weights[i] = tok(), int32(i), 1
	}
	b.Tokens[0], b.Weights[0] = 1, 0
	return []lora.Window{a, b}
}

// writeStartCheckpoint writes a finetune checkpoint at step 0 holding the
// adapter at path as the LoRA weights and zero AdamW moments: what Train
// resumes from to start at given A and B.
func writeStartCheckpoint(t *testing.T, path string, adapter *adapters.LoRA, cfg lora.Config) {
	t.Helper()
	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.type", Value: "finetune-checkpoint"},
		{Key: "finetune.checkpoint.version", Value: uint32(1)},
		{Key: "finetune.checkpoint.step", Value: uint64(0)},
		{Key: "finetune.checkpoint.tokens", Value: uint64(0)},
		{Key: "finetune.checkpoint.elapsed_ns", Value: int64(0)},
		{Key: "finetune.checkpoint.best_val", Value: math.Inf(1)},
		{Key: "finetune.checkpoint.last_loss", Value: 0.0},
		{Key: "finetune.checkpoint.best_step", Value: uint64(0)},
		{Key: "finetune.checkpoint.bad_evals", Value: uint64(0)},
		{Key: "finetune.checkpoint.seed", Value: cfg.Seed},
		{Key: "finetune.checkpoint.grad_accum", Value: uint32(cfg.GradAccum)},
		{Key: "adapter.lora.rank", Value: uint32(cfg.Rank)},
		{Key: "adapter.lora.alpha", Value: float32(cfg.Alpha)},
		{Key: "adapter.lora.targets", Value: lora.Targets},
	}
	var ts []gguf.Tensor
	add := func(name string, v []float32) {
		ts = append(ts, gguf.Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: gguf.F32, Data: gguf.F32Data(v)})
	}
	for _, p := range adapter.Pairs {
		add(p.Base+".lora_a", p.A)
		add(p.Base+".lora_b", p.B)
		add(p.Base+".adam_m", make([]float32, len(p.A)+len(p.B)))
		add(p.Base+".adam_v", make([]float32, len(p.A)+len(p.B)))
	}
	if err := gguf.Write(path, kv, ts); err != nil {
		t.Fatal(err)
	}
}

// relDiff is |a-b| / |b| (Frobenius).
func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		d += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// TestPeerTraining trains 10 steps with finetune and with PEFT + torch's
// AdamW from the same start (PEFT's own initialisation, imported) on the
// same two packed windows per step (gradient accumulation 2), with weight
// decay, clipping and a cosine schedule, and compares every step's loss
// and the final A and B of all seven projections.
func TestPeerTraining(t *testing.T) {
	pyref.Need(t)
	gqa := filepath.Join(t.TempDir(), "gqa.gguf")
	if err := testmodel.Write(gqa, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Type: "f32", Seed: 12}); err != nil {
		t.Fatal(err)
	}
	models := []struct {
		name, path string
		vocab      int
	}{
		{"stories260K", shared.Path(t, "models/stories260K.gguf"), 512},
		{"GQA testmodel", gqa, 259},
	}
	const steps = 10
	cfg := lora.Config{Rank: 8, Alpha: 16, LearningRate: 5e-3, Schedule: "cosine", WeightDecay: 0.01,
		GradAccum: 2, ClipNorm: 1, MaxSteps: steps, Seed: 21, Threads: 2}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(14, 3))
	var jobs []map[string]any
	windows := map[string][]lora.Window{}
	for _, m := range models {
		ws := packedWindows(rng, 32, m.vocab)
		windows[m.name] = ws
		jw := make([]map[string]any, len(ws))
		for k, x := range ws {
			jw[k] = map[string]any{"tokens": x.Tokens, "weights": x.Weights, "pos": x.Pos, "seq": x.Seq}
		}
		d := filepath.Join(dir, m.name)
		jobs = append(jobs, map[string]any{"op": "train", "gguf": m.path,
			"targets": []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
			"r":       cfg.Rank, "alpha": cfg.Alpha, "lr": cfg.LearningRate, "weight_decay": cfg.WeightDecay,
			"betas": []float64{0.9, 0.999}, "eps": 1e-8, "clip": cfg.ClipNorm, "steps": steps, "schedule": cfg.Schedule,
			"windows": jw, "grad_accum": cfg.GradAccum, "seed": 7,
			"init_out": filepath.Join(d, "init"), "final_out": filepath.Join(d, "final"), "losses_out": filepath.Join(d, "losses.json")})
	}
	pyref.Run(t, jobs)

	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			d := filepath.Join(dir, m.name)
			var ref struct {
				Loss     []float64 `json:"loss"`
				GradNorm []float64 `json:"grad_norm"`
			}
			b, err := os.ReadFile(filepath.Join(d, "losses.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatal(err)
			}
			// PEFT's initial adapter, in finetune's layout, as Train's start.
			init := filepath.Join(d, "init.gguf")
			if err := adapters.ImportPEFT(filepath.Join(d, "init"), m.path, init); err != nil {
				t.Fatal(err)
			}
			start, err := adapters.Read(init)
			if err != nil {
				t.Fatal(err)
			}
			final := filepath.Join(d, "final.gguf")
			if err := adapters.ImportPEFT(filepath.Join(d, "final"), m.path, final); err != nil {
				t.Fatal(err)
			}
			want, err := adapters.Read(final)
			if err != nil {
				t.Fatal(err)
			}
			// Both of finetune's training paths: the whole-window graph and
			// the checkpointed one (layers recomputed in the backward pass).
			for _, mode := range []string{"off", "on"} {
				t.Run("checkpointing "+mode, func(t *testing.T) {
					peerTrain(t, m.name, m.path, cfg, mode, start, want, windows[m.name], ref.Loss, ref.GradNorm)
				})
			}
		})
	}
}

// peerTrain trains from start with finetune and compares the losses and
// the final adapter with PEFT's.
func peerTrain(t *testing.T, name, model string, cfg lora.Config, mode string, start, want *adapters.LoRA, ws []lora.Window, refLoss, refNorm []float64) {
	const steps = 10
	d := t.TempDir()
	c := cfg
	c.Resume, c.Checkpointing = true, mode
	c.Files = lora.Files{Checkpoint: filepath.Join(d, "ckpt.gguf"), Metrics: filepath.Join(d, "metrics.jsonl"), Adapter: filepath.Join(d, "adapter.gguf")}
	writeStartCheckpoint(t, c.Files.Checkpoint, start, c)
	var got []lora.Metrics
	if _, err := lora.Train(context.Background(), model, c, lora.Data{Train: ws}, func(x lora.Metrics) { got = append(got, x) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != steps || len(refLoss) != steps {
		t.Fatalf("%d steps by finetune and %d by PEFT, want %d", len(got), len(refLoss), steps)
	}
	worst := 0.0
	for i := range got {
		r := math.Abs(got[i].Loss-refLoss[i]) / refLoss[i]
		worst = math.Max(worst, r)
		t.Logf("step %2d: loss finetune %.7f PEFT %.7f (rel %.1e), grad norm finetune %.6f PEFT %.6f", i+1, got[i].Loss, refLoss[i], r, got[i].GradNorm, refNorm[i])
		if r > peerLossTol {
			t.Errorf("step %d: loss %.7f, PEFT's %.7f: relative difference %.2e > %g", i+1, got[i].Loss, refLoss[i], r, peerLossTol)
		}
	}
	if drop := refLoss[0] - refLoss[steps-1]; drop < 0.05 {
		t.Fatalf("the loss falls by only %g in %d steps: the test would prove little", drop, steps)
	}

	have, err := adapters.Read(c.Files.Adapter)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]adapters.Pair{}
	for _, p := range have.Pairs {
		byName[p.Base] = p
	}
	if len(have.Pairs) != len(want.Pairs) {
		t.Fatalf("finetune's adapter has %d pairs, PEFT's %d", len(have.Pairs), len(want.Pairs))
	}
	worstA, worstB := 0.0, 0.0
	for _, w := range want.Pairs {
		h, ok := byName[w.Base]
		if !ok {
			t.Fatalf("finetune's adapter lacks %s", w.Base)
		}
		ra, rb := relDiff(h.A, w.A), relDiff(h.B, w.B)
		worstA, worstB = math.Max(worstA, ra), math.Max(worstB, rb)
		if ra > peerAdapterTol || rb > peerAdapterTol {
			t.Errorf("%s: A differs from PEFT's by %.2e, B by %.2e (relative), want <= %g", w.Base, ra, rb, peerAdapterTol)
		}
		if math.IsNaN(rb) || math.IsInf(rb, 0) {
			t.Fatalf("PEFT's B of %s is still zero", w.Base)
		}
	}
	t.Logf("%s, checkpointing %s: after %d steps the losses agree to %.1e relative, A to %.1e and B to %.1e (worst tensor)", name, mode, steps, worst, worstA, worstB)
}
