package lora

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// prefWindow makes a window of ctxLen tokens holding prompt then answer,
// weighted on the answer, padded with Seq -1.
func prefWindow(prompt, answer []int32, ctxLen int) Window {
	w := Window{Tokens: make([]int32, ctxLen), Weights: make([]float32, ctxLen), Pos: make([]int32, ctxLen), Seq: make([]int32, ctxLen)}
	toks := append(append([]int32(nil), prompt...), answer...)
	for i := range ctxLen {
		if i < len(toks) {
			w.Tokens[i], w.Pos[i] = toks[i], int32(i)
			if i >= len(prompt) {
				w.Weights[i] = 1
			}
		} else {
			w.Seq[i] = -1
		}
	}
	return w
}

// dpoTrainer is a trainer over pairs on stories260K with LoRA values
// whose B is random (so that every gradient is non-zero) and reference
// log-probabilities that differ from the policy's by offsets.
func dpoTrainer(t *testing.T, cfg Config, pairs []Preference, checkpoint bool) (*trainer, *Params) {
	t.Helper()
	model := shared.Path(t, "models/stories260K.gguf")
	const rank = 4
	_, e := openEngine(t, model, Targets, rank, len(pairs[0].Chosen.Tokens))
	e.checkpoint = checkpoint
	p := initParams(e, rank, 8, 2, 5)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range p.Pairs {
		for j := range p.Pairs[i].B {
			p.Pairs[i].B[j] = float32(rng.NormFloat64() * 0.1)
		}
	}
	e.setParams(p)
	cfg.GradAccum = len(pairs)
	tr := &trainer{cfg: &cfg, e: e, st: &state{params: p}, data: Data{TrainPairs: pairs}}
	ref, err := tr.logps(pairs, "training")
	if err != nil {
		t.Fatal(err)
	}
	for i := range ref {
		ref[i] += float64(i%3) - 1 // z away from 0: σ(−z) is not 1/2
	}
	tr.refTrain = ref
	return tr, p
}

// dpoLossAt is the loss dpoGrads differentiates, computed from forward
// passes alone.
func dpoLossAt(t *testing.T, tr *trainer, p *Params) float64 {
	tr.e.setParams(p)
	lp, err := tr.logps(tr.data.TrainPairs, "training")
	if err != nil {
		t.Fatal(err)
	}
	loss, nll := 0.0, 0.0
	n := float64(len(tr.data.TrainPairs))
	for i, pr := range tr.data.TrainPairs {
		loss += dpo(tr.cfg.Beta, lp[2*i], lp[2*i+1], tr.refTrain[2*i], tr.refTrain[2*i+1]).loss / n
		nll -= lp[2*i] / float64(pr.Chosen.Targets())
	}
	return loss + tr.cfg.RPOAlpha*nll/n
}

// TestDPOGradientMatchesFiniteDifferences checks the DPO gradient (the
// per-answer cross-entropy gradients weighted by ±β·σ(−z), plus RPO's
// term) against central finite differences of the DPO loss computed from
// forward passes, on stories260K, on both memory paths.
func TestDPOGradientMatchesFiniteDifferences(t *testing.T) {
	for _, c := range []struct {
		name       string
		alpha      float64
		checkpoint bool
	}{{"whole graph", 0, false}, {"checkpointed, RPO alpha 0.5", 0.5, true}} {
		t.Run(c.name, func(t *testing.T) {
			const T = 24
			rng := rand.New(rand.NewPCG(21, 21))
			var pairs []Preference
			for range 2 {
				prompt := randomTokens(rng, 8, 512)
				pairs = append(pairs, Preference{
					Chosen:   prefWindow(prompt, randomTokens(rng, 9, 512)[1:], T),
					Rejected: prefWindow(prompt, randomTokens(rng, 13, 512)[1:], T),
				})
			}
			tr, p := dpoTrainer(t, Config{Method: MethodDPO, Beta: 0.5, RPOAlpha: c.alpha}, pairs, c.checkpoint)
			tr.grads()
			if _, _, _, err := tr.dpoGrads([]int{0, 1}); err != nil {
				t.Fatal(err)
			}
			// The loss sums log-probabilities over the answers, so its
			// float32 noise (about 1e-5) and curvature are larger than a
			// mean's: single values are compared where their gradient is
			// large, to 2%, and the whole gradient along directions (the
			// gradient itself and random ones), where the derivative is
			// large beside the noise, to 0.5%.
			const h = 2e-2
			checked, worst := 0, 0.0
			check := func(what string, an, fd, tol float64) {
				rel := math.Abs(an-fd) / math.Max(math.Max(math.Abs(an), math.Abs(fd)), 1e-3)
				worst = math.Max(worst, rel)
				if rel > tol {
					t.Errorf("%s: analytic %.6g, finite difference %.6g (relative error %.3g)", what, an, fd, rel)
				}
			}
			for i := range p.Pairs {
				for _, which := range []string{"A", "B"} {
					vals, grads := p.Pairs[i].A, tr.gA[i]
					if which == "B" {
						vals, grads = p.Pairs[i].B, tr.gB[i]
					}
					for k, tries := 0, 0; k < 1 && tries < 2000; tries++ {
						j := rng.IntN(len(vals))
						if math.Abs(float64(grads[j])) < 5e-2 {
							continue
						}
						k++
						old := vals[j]
						central := func(h float32) float64 {
							vals[j] = old + h
							lp := dpoLossAt(t, tr, p)
							vals[j] = old - h
							lm := dpoLossAt(t, tr, p)
							vals[j] = old
							return (lp - lm) / (2 * float64(h))
						}
						checked++
						check(fmt.Sprintf("%s %s[%d]", WeightName(p.Pairs[i].Layer, p.Pairs[i].Target), which, j), float64(grads[j]), (4*central(h/2)-central(h))/3, 2e-2)
					}
				}
			}
			// Directional derivatives: along d, the derivative is g·d.
			for dir := range 3 {
				var d [][2][]float32
				an, norm := 0.0, 0.0
				for i := range p.Pairs {
					da, db := make([]float32, len(tr.gA[i])), make([]float32, len(tr.gB[i]))
					for j := range da {
						if dir == 0 {
							da[j] = tr.gA[i][j]
						} else {
							da[j] = float32(rng.NormFloat64())
						}
						an += float64(da[j]) * float64(tr.gA[i][j])
						norm += float64(da[j]) * float64(da[j])
					}
					for j := range db {
						if dir == 0 {
							db[j] = tr.gB[i][j]
						} else {
							db[j] = float32(rng.NormFloat64())
						}
						an += float64(db[j]) * float64(tr.gB[i][j])
						norm += float64(db[j]) * float64(db[j])
					}
					d = append(d, [2][]float32{da, db})
				}
				norm = math.Sqrt(norm)
				an /= norm
				at := func(h float64) float64 {
					q := p.clone()
					for i := range q.Pairs {
						for j := range q.Pairs[i].A {
							q.Pairs[i].A[j] += float32(h * float64(d[i][0][j]) / norm)
						}
						for j := range q.Pairs[i].B {
							q.Pairs[i].B[j] += float32(h * float64(d[i][1][j]) / norm)
						}
					}
					return dpoLossAt(t, tr, q)
				}
				central := func(h float64) float64 { return (at(h) - at(-h)) / (2 * h) }
				hd := h
				if dir == 0 {
					// Along the gradient the derivative is large (the
					// noise small beside it) and so is the curvature: a
					// shorter step.
					hd = h / 4
				}
				fd := (4*central(hd/2) - central(hd)) / 3
				check(fmt.Sprintf("direction %d", dir), an, fd, 5e-3)
				t.Logf("direction %d: analytic %.6g, finite difference %.6g", dir, an, fd)
			}
			tr.e.setParams(p)
			if checked < len(p.Pairs) {
				t.Fatalf("only %d parameters checked", checked)
			}
			t.Logf("%d parameters, worst relative error %.2e", checked, worst)
		})
	}
}

// TestDPOIdenticalPairZeroGradient: a pair whose chosen and rejected
// answers are equal gives exactly zero gradient (and loss log 2 when the
// policy is its reference).
func TestDPOIdenticalPairZeroGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	prompt, answer := randomTokens(rng, 6, 512), randomTokens(rng, 10, 512)[1:]
	w := prefWindow(prompt, answer, 24)
	tr, _ := dpoTrainer(t, Config{Method: MethodDPO, Beta: 0.1}, []Preference{{Chosen: w, Rejected: w}}, false)
	tr.refTrain[1] = tr.refTrain[0]
	tr.grads()
	loss, _, rw, err := tr.dpoGrads([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	nonzero := 0
	for i := range tr.gA {
		for _, g := range append(append([]float32(nil), tr.gA[i]...), tr.gB[i]...) {
			if g != 0 {
				nonzero++
			}
		}
	}
	if nonzero > 0 || math.Abs(loss-math.Ln2) > 1e-12 || rw.Margin != 0 || rw.Accuracy != 0 {
		t.Fatalf("identical pair: %d non-zero gradient values, loss %v (want log 2), rewards %+v", nonzero, loss, rw)
	}
	// The gradient is not zero for want of work: with the rejected answer
	// changed, it is not.
	tr.data.TrainPairs[0].Rejected = prefWindow(prompt, randomTokens(rng, 10, 512)[1:], 24)
	tr.refTrain, _ = tr.logps(tr.data.TrainPairs, "training")
	tr.grads()
	if _, _, _, err := tr.dpoGrads([]int{0}); err != nil {
		t.Fatal(err)
	}
	if sumSquares(tr.gB[0]) == 0 {
		t.Fatal("a real pair gave a zero gradient too")
	}
}

// qaPairs are the qa answers as preference pairs: the right answer
// chosen, "I do not know." rejected.
func qaPairs(t *testing.T, model string, ctxLen int) []Preference {
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out []Preference
	for i, ex := range qaExamples(t, model) {
		full, err := m.Tokenize("Q: "+qa[i][0]+"\nA: I do not know.\n", true, false)
		if err != nil || !slices.Equal(full[:len(ex.prompt)], ex.prompt) {
			t.Fatalf("the rejected answer does not continue the prompt's tokens (%v)", err)
		}
		out = append(out, Preference{
			Chosen:   prefWindow(ex.prompt, ex.tokens[len(ex.prompt):], ctxLen),
			Rejected: prefWindow(ex.prompt, full[len(ex.prompt):], ctxLen),
		})
	}
	return out
}

// TestDPOTrains runs DPO on stories260K: the first step's loss is log 2
// (the policy starts as its reference), the pairs' accuracy and margin
// rise, the run resumes exactly after an interruption, and a DPO run
// started from an adapter takes that adapter as its reference.
func TestDPOTrains(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	pairs := qaPairs(t, model, 48)
	// Validation on the pairs trained on: the check is that DPO moves the
	// answers it is shown, not that stories260K generalises.
	data := Data{TrainPairs: pairs[:16], ValPairs: pairs[:16]}
	cfg := func(dir string) Config {
		return Config{Method: MethodDPO, Beta: 0.5, Rank: 4, Alpha: 8, LearningRate: 3e-3, MaxSteps: 12, GradAccum: 2, CheckpointEvery: 4, EvalEvery: 3, Seed: 3, Threads: 1, Files: filesIn(dir)}
	}
	full := t.TempDir()
	var steps []Metrics
	res, err := Train(context.Background(), model, cfg(full), data, func(m Metrics) { steps = append(steps, m) })
	if err != nil {
		t.Fatal(err)
	}
	first, last := steps[0], steps[len(steps)-1]
	if math.Abs(first.Loss-math.Ln2) > 1e-4 || first.Rewards == nil || math.Abs(first.Rewards.Margin) > 1e-4 {
		t.Fatalf("step 1: loss %v (want log 2), rewards %+v", first.Loss, first.Rewards)
	}
	if last.ValRewards == nil || *last.ValLoss >= math.Ln2 || *last.ValLoss >= *steps[2].ValLoss || last.ValRewards.Margin <= 0 || last.ValRewards.Accuracy <= 0.5 {
		t.Fatalf("after %d steps: val loss %v (at step 3: %v), val rewards %+v, train rewards %+v", last.Step, *last.ValLoss, *steps[2].ValLoss, last.ValRewards, last.Rewards)
	}
	t.Logf("step 1 loss %.4f, val loss %.4f; step %d loss %.4f, val loss %.4f, val margin %.3f, val accuracy %.2f", first.Loss, *steps[2].ValLoss, last.Step, last.Loss, *last.ValLoss, last.ValRewards.Margin, last.ValRewards.Accuracy)

	// Interrupted after step 6 (a checkpoint at 4), then resumed.
	part := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	c := cfg(part)
	if _, err := Train(ctx, model, c, data, func(m Metrics) {
		if m.Step == 6 {
			cancel()
		}
	}); err != nil {
		t.Fatal(err)
	}
	c.Resume = true
	if _, err := Train(context.Background(), model, c, data, nil); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, full, part)

	// Resuming as SFT is refused.
	c.Method = MethodSFT
	c.Files.Checkpoint = filepath.Join(part, "checkpoint.gguf")
	if _, err := Train(context.Background(), model, c, Data{Train: pack(qaExamples(t, model), 64)}, nil); err == nil {
		t.Fatal("a DPO checkpoint resumed as SFT")
	}

	// DPO on top of an adapter: its reference is that adapter, so the
	// first loss is log 2 again, though the adapter is far from the base.
	next := t.TempDir()
	c = cfg(next)
	c.Init, c.MaxSteps = res.Adapter, 2
	steps = steps[:0]
	if _, err := Train(context.Background(), model, c, data, func(m Metrics) { steps = append(steps, m) }); err != nil {
		t.Fatal(err)
	}
	if math.Abs(steps[0].Loss-math.Ln2) > 1e-4 {
		t.Fatalf("DPO from an adapter: step 1 loss %v, want log 2", steps[0].Loss)
	}
	c.Rank = 8
	c.Files = filesIn(t.TempDir())
	if _, err := Train(context.Background(), model, c, data, nil); err == nil {
		t.Fatal("started from an adapter of another rank")
	}
	if _, err := os.Stat(filepath.Join(next, "adapter.gguf")); err != nil {
		t.Fatal(err)
	}
}
