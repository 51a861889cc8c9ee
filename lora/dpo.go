package lora

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/finetune-dev/finetune/adapters"
)

// Training methods.
const (
	MethodSFT = "sft" // supervised: cross-entropy on the answers (the default)
	MethodDPO = "dpo" // direct preference optimization on preference pairs
)

// Preference is one preference pair as training reads it: the chosen and
// the rejected conversation, each alone in its window (padding has Seq
// -1), with the weights on the answer tokens whose log-probabilities
// preference tuning compares.
type Preference struct {
	Chosen, Rejected Window
}

// Rewards are DPO's figures over a set of pairs, as TRL logs them: the
// implicit rewards β·(log π(y|x) − log π_ref(y|x)) of the chosen and the
// rejected answers (means), their mean margin, the share of pairs whose
// chosen reward is the higher (accuracy), and the mean summed
// log-probabilities of the answers under the model trained.
type Rewards struct {
	Chosen        float64 `json:"chosen"`
	Rejected      float64 `json:"rejected"`
	Margin        float64 `json:"margins"`
	Accuracy      float64 `json:"accuracies"`
	LogpsChosen   float64 `json:"logps_chosen"`
	LogpsRejected float64 `json:"logps_rejected"`
}

// add accumulates one pair's figures with weight w (1/pairs for a mean).
func (r *Rewards) add(f dpoFigures, w float64) {
	r.Chosen += w * f.rewardC
	r.Rejected += w * f.rewardR
	r.Margin += w * (f.rewardC - f.rewardR)
	if f.rewardC > f.rewardR {
		r.Accuracy += w
	}
	r.LogpsChosen += w * f.logpC
	r.LogpsRejected += w * f.logpR
}

// dpoFigures are DPO's values for one pair.
type dpoFigures struct {
	logpC, logpR     float64 // summed log-probabilities of the answers
	rewardC, rewardR float64 // β·(logp − reference logp)
	loss             float64 // −log σ(z), z = rewardC − rewardR
	// weight is β·σ(−z): the loss's gradient is weight·(∇CE(chosen) −
	// ∇CE(rejected)), CE the answers' summed cross-entropy (−logp).
	weight float64
}

// dpo computes the sigmoid DPO loss of one pair from the policy's and the
// reference's summed log-probabilities of the chosen and rejected answers.
func dpo(beta, logpC, logpR, refC, refR float64) dpoFigures {
	f := dpoFigures{logpC: logpC, logpR: logpR, rewardC: beta * (logpC - refC), rewardR: beta * (logpR - refR)}
	z := f.rewardC - f.rewardR
	f.loss = softplus(-z)
	f.weight = beta / (1 + math.Exp(z))
	return f
}

// softplus is log(1 + e^x), without overflow.
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// prefWindows lists the windows of pairs, chosen then rejected.
func prefWindows(pairs []Preference) []Window {
	ws := make([]Window, 0, 2*len(pairs))
	for _, p := range pairs {
		ws = append(ws, p.Chosen, p.Rejected)
	}
	return ws
}

// logps are the summed log-probabilities of the answers of pairs (chosen
// then rejected, per pair) under the engine's current LoRA values, without
// dropout.
func (t *trainer) logps(pairs []Preference, what string) ([]float64, error) {
	out := make([]float64, 0, 2*len(pairs))
	start, last := time.Now(), time.Now()
	for i := range pairs {
		if time.Since(last) > 10*time.Second {
			t.e.logf("reference log-probabilities", "pairs", what, "done", fmt.Sprintf("%d/%d", i, len(pairs)), "elapsed", time.Since(start).Round(time.Second))
			last = time.Now()
		}
		for _, w := range []*Window{&pairs[i].Chosen, &pairs[i].Rejected} {
			t.e.prepare(w, &t.in, true)
			if t.in.targets == 0 {
				return nil, fmt.Errorf("lora: %s pair %d has an answer with no target tokens", what, i)
			}
			l, err := t.e.lossWindow(&t.in)
			if err != nil {
				return nil, err
			}
			out = append(out, -l*float64(t.in.targets))
		}
	}
	return out, nil
}

// references computes, for those of pairs idx whose reference
// log-probabilities ref (chosen, rejected per pair; NaN: not yet) lacks,
// the summed log-probabilities of their answers under the starting LoRA
// values (B zero: the base itself, or the adapter the run starts from),
// then puts the current values back. Each pair's are computed once, when
// the run first reads it: a run that reads part of its pairs pays for no
// more, and there is never a second copy of the model.
func (t *trainer) references(pairs []Preference, ref []float64, idx []int, what string) error {
	var todo []Preference
	var at []int
	for _, i := range idx {
		if math.IsNaN(ref[2*i]) && !slices.Contains(at, i) {
			todo = append(todo, pairs[i])
			at = append(at, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	t.e.setParams(t.start)
	lp, err := t.logps(todo, what)
	t.e.setParams(t.st.params)
	if err != nil {
		return err
	}
	for k, i := range at {
		ref[2*i], ref[2*i+1] = lp[2*k], lp[2*k+1]
	}
	return nil
}

// unknownRefs are n pairs' reference log-probabilities, none computed.
func unknownRefs(n int) []float64 {
	r := make([]float64, 2*n)
	for i := range r {
		r[i] = math.NaN()
	}
	return r
}

// stepDPO runs one DPO optimizer step over GradAccum pairs: each answer is
// run forward and backward once, its gradient of the summed cross-entropy
// kept apart, and the pair's gradient is their difference weighted by
// β·σ(−z) (plus, with RPO's alpha, the gradient of the chosen answer's
// mean cross-entropy per token). Then clipping and AdamW as for SFT.
//
// RPO's term is alpha times the mean over the step's pairs of each chosen
// answer's cross-entropy averaged over its own tokens: TRL's DPOTrainer
// with loss_type ["sigmoid", "sft"] and loss_weights [1, alpha] takes the
// mean over a micro-batch's chosen tokens and averages its micro-batches,
// and finetune's micro-batch is one pair (as the RPO paper's NLL term, each
// answer normalised by its length). Taken over the step's tokens instead,
// long answers would weigh more than TRL gives them.
func (t *trainer) stepDPO() (loss, norm float64, tokens int, rw Rewards, err error) {
	cfg, st := t.cfg, t.st
	t.threads()
	t.grads()
	idx := make([]int, cfg.GradAccum)
	for k := range idx {
		idx[k] = t.indexAt(st.step*cfg.GradAccum+k, len(t.data.TrainPairs))
	}
	if loss, tokens, rw, err = t.dpoGrads(idx); err != nil {
		return 0, 0, 0, rw, err
	}
	return loss, t.finishStep(), tokens, rw, nil
}

// dpoGrads adds to the step's accumulators the gradient of the DPO loss
// averaged over the training pairs idx (with RPO's term when set), and
// returns that loss, the tokens read and the pairs' rewards.
func (t *trainer) dpoGrads(idx []int) (loss float64, tokens int, rw Rewards, err error) {
	cfg, e, st := t.cfg, t.e, t.st
	if t.sA[0] == nil {
		for s := range 2 {
			for _, p := range st.params.Pairs {
				t.sA[s] = append(t.sA[s], make([]float32, len(p.A)))
				t.sB[s] = append(t.sB[s], make([]float32, len(p.B)))
			}
		}
	}
	if err := t.references(t.data.TrainPairs, t.refTrain, idx, "training"); err != nil {
		return 0, 0, rw, err
	}
	G := len(idx)
	rng := rand.New(rand.NewPCG(cfg.Seed^0xd50f, uint64(st.step)+1))
	nll := 0.0 // the chosen answers' mean cross-entropies, summed
	for _, i := range idx {
		p := &t.data.TrainPairs[i]
		var logp [2]float64
		var targets [2]int
		for s, w := range []*Window{&p.Chosen, &p.Rejected} {
			e.prepare(w, &t.in, true)
			if t.in.targets == 0 {
				return 0, 0, rw, fmt.Errorf("lora: training pair %d has an answer with no target tokens", i)
			}
			drop := rng.Uint64() // this side's dropout masks
			for j := range t.sA[s] {
				clear(t.sA[s][j])
				clear(t.sB[s][j])
			}
			mean, err := e.trainWindow(&t.in, 1, drop, t.sA[s], t.sB[s])
			if err != nil {
				return 0, 0, rw, err
			}
			logp[s] = -mean * float64(t.in.targets)
			targets[s] = t.in.targets
			tokens += len(w.Tokens)
		}
		f := dpo(cfg.Beta, logp[0], logp[1], t.refTrain[2*i], t.refTrain[2*i+1])
		loss += f.loss / float64(G)
		rw.add(f, 1/float64(G))
		wC, wR := float32(f.weight/float64(G)), float32(-f.weight/float64(G))
		if cfg.RPOAlpha > 0 {
			wC += float32(cfg.RPOAlpha / (float64(G) * float64(targets[0])))
			nll += -logp[0] / float64(targets[0])
		}
		for j := range t.gA {
			axpy2(t.gA[j], wC, t.sA[0][j], wR, t.sA[1][j])
			axpy2(t.gB[j], wC, t.sB[0][j], wR, t.sB[1][j])
		}
	}
	if cfg.RPOAlpha > 0 {
		loss += cfg.RPOAlpha * nll / float64(G)
	}
	return loss, tokens, rw, nil
}

// axpy2 adds a·x + b·y to dst.
func axpy2(dst []float32, a float32, x []float32, b float32, y []float32) {
	for i := range dst {
		dst[i] += a*x[i] + b*y[i]
	}
}

// validateDPO is the mean DPO loss (with RPO's term when set, as in
// stepDPO) and the rewards over the validation pairs valSample chose.
func (t *trainer) validateDPO() (float64, Rewards, error) {
	start := time.Now()
	defer t.passDone(start)
	t.threads()
	t.st.valPasses++
	var rw Rewards
	if len(t.valIdx) == 0 {
		return 0, rw, errors.New("lora: no validation pairs")
	}
	if err := t.references(t.data.ValPairs, t.refVal, t.valIdx, "validation"); err != nil {
		return 0, rw, err
	}
	loss, nll := 0.0, 0.0
	n := float64(len(t.valIdx))
	for _, i := range t.valIdx {
		p := &t.data.ValPairs[i]
		lp, err := t.logps([]Preference{*p}, "validation")
		if err != nil {
			return 0, rw, err
		}
		f := dpo(t.cfg.Beta, lp[0], lp[1], t.refVal[2*i], t.refVal[2*i+1])
		loss += f.loss / n
		rw.add(f, 1/n)
		nll += -lp[0] / float64(p.Chosen.Targets())
	}
	if t.cfg.RPOAlpha > 0 {
		loss += t.cfg.RPOAlpha * nll / n
	}
	return loss, rw, nil
}

// startParams are the LoRA values a run starts from: those of the adapter
// Config.Init names, or A at random and B zero.
func startParams(e *engine, cfg *Config) (*Params, error) {
	if cfg.Init == "" {
		return initParams(e, cfg.Rank, cfg.Alpha, cfg.scale(), cfg.Seed), nil
	}
	l, err := adapters.Read(cfg.Init)
	if err != nil {
		return nil, fmt.Errorf("lora: the adapter to start from: %w", err)
	}
	byName := map[string]*adapters.Pair{}
	for i := range l.Pairs {
		byName[l.Pairs[i].Base] = &l.Pairs[i]
	}
	p := &Params{Rank: cfg.Rank, Alpha: cfg.Alpha, Scale: cfg.scale()}
	for _, pt := range e.pairs {
		name := WeightName(pt.layer, pt.target)
		q, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("lora: %s adapts no %s: start from an adapter trained with the same targets (%v)", cfg.Init, name, cfg.Targets)
		}
		if q.Rank != cfg.Rank || q.NIn != pt.nIn || q.NOut != pt.nOut {
			return nil, fmt.Errorf("lora: %s: %s has rank %d and shape %dx%d, the run asks for rank %d on %dx%d (set lora.rank to the adapter's)", cfg.Init, name, q.Rank, q.NIn, q.NOut, cfg.Rank, pt.nIn, pt.nOut)
		}
		delete(byName, name)
		p.Pairs = append(p.Pairs, Pair{Layer: pt.layer, Target: pt.target, NIn: pt.nIn, NOut: pt.nOut,
			A: append([]float32(nil), q.A...), B: append([]float32(nil), q.B...)})
	}
	if len(byName) > 0 {
		for name := range byName {
			return nil, fmt.Errorf("lora: %s also adapts %s, which the run does not target (targets %v)", cfg.Init, name, cfg.Targets)
		}
	}
	if scale := float64(l.Alpha) / float64(cfg.Rank); math.Abs(scale-float64(cfg.scale())) > 1e-6*math.Abs(scale) {
		return nil, fmt.Errorf("lora: %s scales its update by %g (alpha %g / rank %d), the run by %g: set lora.alpha (and rslora) as the adapter was trained", cfg.Init, scale, l.Alpha, cfg.Rank, cfg.scale())
	}
	return p, nil
}
