package lora

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/cpuload"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/sysmem"
)

// Data is what a run trains and validates on.
type Data struct {
	Train []Window
	Val   []Window
	// TrainPairs and ValPairs are the preference pairs of a DPO run
	// (Config.Method "dpo"), which reads them instead of Train and Val.
	TrainPairs []Preference
	ValPairs   []Preference
}

// sets are the windows of d a run of method reads, by set name.
func (d *Data) sets(method string) map[string][]Window {
	if method == MethodDPO {
		return map[string][]Window{"training": prefWindows(d.TrainPairs), "validation": prefWindows(d.ValPairs)}
	}
	return map[string][]Window{"training": d.Train, "validation": d.Val}
}

// units are the training units of a run of method: windows, or pairs.
func (d *Data) units(method string) (train, val int) {
	if method == MethodDPO {
		return len(d.TrainPairs), len(d.ValPairs)
	}
	return len(d.Train), len(d.Val)
}

// Metrics describe one optimizer step (one line of metrics.jsonl).
type Metrics struct {
	Step         int      `json:"step"`
	TotalSteps   int      `json:"total_steps"`
	Epoch        float64  `json:"epoch"`
	Loss         float64  `json:"loss"`
	ValLoss      *float64 `json:"val_loss,omitempty"`
	LR           float64  `json:"lr"`
	GradNorm     float64  `json:"grad_norm"`
	Tokens       int64    `json:"tokens"`
	TokensPerSec float64  `json:"tokens_per_s"`
	// ElapsedSec is the run's wall time so far (Result.WallSeconds at
	// this step); ETASec what the steps and validation passes left should
	// take at the pace so far.
	ElapsedSec float64 `json:"elapsed_s"`
	ETASec     float64 `json:"eta_s"`
	// ValSec is the time the validation pass of this step took, and
	// ValWindows how many windows it read.
	ValSec     float64 `json:"val_s,omitempty"`
	ValWindows int     `json:"val_windows,omitempty"`
	// Rewards are a DPO step's figures over its pairs (Loss is then the
	// DPO loss), ValRewards a validation pass's (ValLoss the mean DPO
	// loss); ValWindows then counts pairs.
	Rewards    *Rewards `json:"rewards,omitempty"`
	ValRewards *Rewards `json:"val_rewards,omitempty"`
}

// Result summarises a finished run: the adapter file and the figures its
// adapters.Info records.
type Result struct {
	Adapter string `json:"adapter"`
	adapters.Training
	// WallTime is WallSeconds as a duration: the run's wall time, every
	// session of a resumed run, validation and checkpoints included.
	WallTime time.Duration `json:"-"`
}

// state is everything a checkpoint holds besides the configuration.
type state struct {
	params    *Params
	m, v      [][]float32 // AdamW moments, per pair: A values then B values
	step      int
	tokens    int64
	elapsed   time.Duration // the run's wall time up to the last step
	stepTime  time.Duration // of which computing optimizer steps
	valTime   time.Duration // of which validation passes
	bestVal   float64
	bestStep  int
	badEvals  int
	best      *Params
	valPasses int     // validation passes run
	lastLoss  float64 // the last step's training loss
}

// Train fine-tunes LoRA adapters for the base model at basePath on data.
// It writes cfg.Files: the checkpoint (every CheckpointEvery steps and at
// the end), the metrics, and the adapter (the best by validation loss, else
// the last) with its adapters.Info beside it. progress, when not nil, sees
// every step. Cancelling ctx stops after writing a checkpoint.
func Train(ctx context.Context, basePath string, cfg Config, data Data, progress func(Metrics)) (*Result, error) {
	began := cfg.Started
	if began.IsZero() {
		began = time.Now()
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sets := data.sets(cfg.Method)
	nTrain, nVal := data.units(cfg.Method)
	if nTrain == 0 {
		if cfg.Method == MethodDPO {
			return nil, errors.New("lora: no training pairs")
		}
		return nil, errors.New("lora: no training windows")
	}
	ctxLen := len(sets["training"][0].Tokens)
	for set, ws := range sets {
		for i := range ws {
			if len(ws[i].Tokens) != ctxLen || len(ws[i].Weights) != ctxLen || len(ws[i].Pos) != ctxLen || len(ws[i].Seq) != ctxLen {
				return nil, fmt.Errorf("lora: %s window %d is not %d tokens long in all its fields", set, i, ctxLen)
			}
		}
	}
	for _, p := range []string{cfg.Files.Checkpoint, cfg.Files.Metrics, cfg.Files.Adapter} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
	}
	base, err := OpenBase(basePath)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if ctxLen > base.Hyper.ContextLength {
		return nil, fmt.Errorf("lora: windows of %d tokens exceed the model's context of %d", ctxLen, base.Hyper.ContextLength)
	}
	for set, ws := range sets {
		for i := range ws {
			for _, tok := range ws[i].Tokens {
				if tok < 0 || int(tok) >= base.Hyper.VocabSize {
					return nil, fmt.Errorf("lora: %s window %d holds token %d outside the vocabulary of %d (data tokenized for another model?)", set, i, tok, base.Hyper.VocabSize)
				}
			}
		}
	}
	mem, err := EstimateMemory(basePath, ctxLen, MemoryOptions{Rank: cfg.Rank, Targets: cfg.Targets, Dropout: cfg.Dropout, Precision: cfg.Precision})
	if err != nil {
		return nil, err
	}
	dev, err := OpenDevice(cfg.Device)
	if err != nil {
		return nil, err
	}
	avail := sysmem.Available()
	if dev != nil && dev.Device().Type == ggml.DeviceGPU {
		avail = int64(dev.Device().MemoryFree)
	}
	e, err := newEngineOn(dev, base, cfg.Targets, cfg.Rank, cfg.scale(), float32(cfg.Dropout), ctxLen, cfg.Threads)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var need int64
	e.checkpoint, need = mem.Choose(cfg.Checkpointing, avail)
	e.allRows = cfg.EveryRow
	precision := ResolvePrecision(cfg.Precision, base)
	if dev != nil {
		precision = "f32" // BF16 products are the CPU's
	}
	e.setPrecision(precision)
	e.prof = cfg.Profile
	e.log = cfg.Logger
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log.Info("training graph", "device", e.main().Name(), "checkpointing", e.checkpoint, "precision", precision, "amx", e.amx, "memory_estimate", fmt.Sprintf("%.2f GiB", float64(need)/(1<<30)), "threads_at_most", cfg.Threads)
	if precision == "bf16" && !ggml.NativeBF16() {
		e.log.Warn("train.precision bf16 on a CPU without BF16 dot products (avx512_bf16): ggml converts in software, slower than f32")
	}

	total := cfg.MaxSteps
	if total == 0 {
		total = int(math.Ceil(cfg.Epochs * float64(nTrain) / float64(cfg.GradAccum)))
	}
	start, err := startParams(e, &cfg)
	if err != nil {
		return nil, err
	}
	st := &state{bestVal: math.Inf(1)}
	ckpt := cfg.Files.Checkpoint
	if cfg.Resume {
		if st, err = loadCheckpoint(ckpt, &cfg, e); err != nil {
			return nil, err
		}
	} else {
		st.params = start.clone()
		for _, p := range st.params.Pairs {
			st.m = append(st.m, make([]float32, len(p.A)+len(p.B)))
			st.v = append(st.v, make([]float32, len(p.A)+len(p.B)))
		}
	}
	e.setParams(st.params)
	metrics, err := openMetrics(cfg.Files.Metrics, st.step)
	if err != nil {
		return nil, err
	}
	defer metrics.Close()

	t := &trainer{cfg: &cfg, e: e, data: data, st: st, total: total, nTrain: nTrain, nVal: nVal}
	res := &Result{Training: adapters.Training{TrainableVals: st.params.count()}}
	if cfg.Method == MethodDPO {
		t.start = start
		t.refTrain, t.refVal = unknownRefs(len(data.TrainPairs)), unknownRefs(len(data.ValPairs))
	}
	if nVal > 0 {
		var of int
		val := data.Val
		if cfg.Method == MethodDPO {
			val = make([]Window, len(data.ValPairs)) // a pair is sampled as its chosen window
			for i := range data.ValPairs {
				val[i] = data.ValPairs[i].Chosen
			}
		}
		t.valIdx, of = valSample(val, cfg.ValWindows, cfg.Seed)
		res.ValWindows, res.ValWindowsTotal = len(t.valIdx), of
		if len(t.valIdx) < of {
			e.log.Info(fmt.Sprintf("validation on %d of %d windows", len(t.valIdx), of), "sample", "seeded, the same windows at every pass", "seed", cfg.Seed)
		} else {
			e.log.Info(fmt.Sprintf("validation on all %d windows", of))
		}
	}
	// The run's wall time: the sessions before this one (from the
	// checkpoint), then this one from its start, its setup included.
	elapsed0 := st.elapsed
	wall := func() time.Duration { return elapsed0 + time.Since(began) }
	for st.step < total {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		stepStart := time.Now()
		var loss, norm float64
		var tokens int
		var rw *Rewards
		if cfg.Method == MethodDPO {
			var r Rewards
			loss, norm, tokens, r, err = t.stepDPO()
			rw = &r
		} else {
			loss, norm, tokens, err = t.step()
		}
		if err != nil {
			return nil, err
		}
		took := time.Since(stepStart)
		st.stepTime += took
		t.stepsRun++
		t.stepsTime += took
		st.step++
		st.tokens += int64(tokens)
		st.lastLoss = loss
		m := Metrics{Step: st.step, TotalSteps: total, Epoch: float64(st.step*cfg.GradAccum) / float64(nTrain),
			Loss: loss, LR: t.lr, GradNorm: norm, Tokens: st.tokens, TokensPerSec: float64(tokens) / took.Seconds(), Rewards: rw}
		if t.validates(st.step) {
			val, vrw, err := t.validateAny()
			if err != nil {
				return nil, err
			}
			m.ValRewards = vrw
			m.ValLoss, m.ValSec, m.ValWindows = &val, t.lastPass.Seconds(), len(t.valIdx)
			if val < st.bestVal {
				st.bestVal, st.bestStep, st.badEvals = val, st.step, 0
				st.best = st.params.clone()
			} else {
				st.badEvals++
			}
		}
		st.elapsed = wall()
		m.ElapsedSec, m.ETASec = st.elapsed.Seconds(), t.eta().Seconds()
		if err := metrics.write(m); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(m)
		}
		if cfg.CheckpointEvery > 0 && st.step%cfg.CheckpointEvery == 0 && st.step < total {
			if err := saveCheckpoint(ckpt, &cfg, st); err != nil {
				return nil, err
			}
		}
		if cfg.Patience > 0 && st.badEvals >= cfg.Patience {
			res.StoppedEarly = true
			break
		}
	}
	st.elapsed = wall()
	if err := saveCheckpoint(ckpt, &cfg, st); err != nil {
		return nil, err
	}

	final := st.params
	if st.best != nil {
		final = st.best
		v := st.bestVal
		res.BestValLoss, res.BestStep = &v, st.bestStep
	}
	res.Adapter = cfg.Files.Adapter
	if err := adapters.Write(res.Adapter, final.Adapter()); err != nil {
		return nil, err
	}
	res.Steps, res.TokensSeen, res.TrainLoss = st.step, st.tokens, st.lastLoss
	if nVal > 0 && !res.Interrupted {
		if st.best != nil {
			// The adapter written is the best one, validated at its step
			// on these very weights: no second pass over the same windows.
			v := st.bestVal
			res.ValLoss = &v
		} else {
			// No validation kept a best (none ran, or none gave a
			// number): validate what is written.
			e.setParams(final)
			v, _, err := t.validateAny()
			if err != nil {
				return nil, err
			}
			res.ValLoss = &v
		}
	}
	res.ValPasses = st.valPasses
	res.WallTime = wall()
	res.WallSeconds = res.WallTime.Seconds()
	res.StepsSeconds, res.ValSeconds = st.stepTime.Seconds(), st.valTime.Seconds()
	if err := writeInfo(basePath, &cfg, res); err != nil {
		return nil, err
	}
	return res, nil
}

// trainer runs optimizer steps.
type trainer struct {
	cfg   *Config
	e     *engine
	data  Data
	st    *state
	total int
	lr    float64
	in    inputs
	gA    [][]float32 // gradient accumulators, per pair
	gB    [][]float32

	permEpoch int // the epoch perm belongs to (-1: none yet)
	perm      []int

	valIdx []int // the validation windows (or pairs) a pass reads (valSample)

	nTrain, nVal int // training and validation units: windows, or pairs

	// DPO: the reference log-probabilities of the training and validation
	// pairs (chosen, rejected per pair), and one gradient per side.
	// start holds the LoRA values the run started from (the reference).
	refTrain, refVal []float64
	sA, sB           [2][][]float32
	start            *Params

	// This session's pace, for the ETA: steps and validation passes run
	// and the time they took; lastPass is the last pass's time.
	stepsRun, passesRun   int
	stepsTime, passesTime time.Duration
	lastPass              time.Duration
}

// validates says whether step (1-based) ends with a validation pass:
// every EvalEvery steps and at the last step, when there are validation
// windows.
func (t *trainer) validates(step int) bool {
	every := t.cfg.EvalEvery
	return t.nVal > 0 && (every > 0 && step%every == 0 || step == t.total)
}

// eta is what the steps and validation passes after the current step
// should take at this session's pace (a pass not yet timed counts 0).
func (t *trainer) eta() time.Duration {
	st := t.st
	if t.stepsRun == 0 {
		return 0
	}
	left := time.Duration(float64(t.stepsTime) / float64(t.stepsRun) * float64(t.total-st.step))
	if t.passesRun > 0 && t.nVal > 0 && st.step < t.total {
		passes := 1 // the last step's
		if every := t.cfg.EvalEvery; every > 0 {
			passes = t.total/every - st.step/every
			if t.total%every != 0 {
				passes++
			}
		}
		left += time.Duration(float64(t.passesTime) / float64(t.passesRun) * float64(passes))
	}
	return left
}

// windowAt returns the training window consumed at global position g:
// epoch g/n visits the windows in a permutation seeded by (seed, epoch), so
// a resumed run sees exactly the windows it would have seen.
func (t *trainer) windowAt(g int) *Window {
	return &t.data.Train[t.indexAt(g, len(t.data.Train))]
}

// indexAt is the index of the unit (of n) consumed at global position g.
func (t *trainer) indexAt(g, n int) int {
	if epoch := g / n; t.perm == nil || epoch != t.permEpoch {
		t.perm = rand.New(rand.NewPCG(t.cfg.Seed, uint64(epoch)+1)).Perm(n)
		t.permEpoch = epoch
	}
	return t.perm[g%n]
}

// grads makes the step's gradient accumulators, zero.
func (t *trainer) grads() {
	if t.gA == nil {
		for _, p := range t.st.params.Pairs {
			t.gA = append(t.gA, make([]float32, len(p.A)))
			t.gB = append(t.gB, make([]float32, len(p.B)))
		}
	}
	for i := range t.gA {
		clear(t.gA[i])
		clear(t.gB[i])
	}
}

// finishStep clips the accumulated gradient, applies AdamW with the
// step's learning rate and hands the new values to the engine; it returns
// the gradient's norm before clipping.
func (t *trainer) finishStep() (norm float64) {
	for i := range t.gA {
		norm += sumSquares(t.gA[i]) + sumSquares(t.gB[i])
	}
	norm = math.Sqrt(norm)
	clip := 1.0
	if t.cfg.ClipNorm > 0 && norm > t.cfg.ClipNorm {
		clip = t.cfg.ClipNorm / norm
	}
	t.lr = t.cfg.lr(t.st.step+1, t.total)
	t.adamw(clip)
	t.e.setParams(t.st.params)
	return norm
}

// step runs one optimizer step: GradAccum windows, clipping, AdamW.
func (t *trainer) step() (loss, norm float64, tokens int, err error) {
	cfg, e, st := t.cfg, t.e, t.st
	t.threads()
	t.grads()
	windows := make([]*Window, cfg.GradAccum)
	targets := 0
	for k := range windows {
		windows[k] = t.windowAt(st.step*cfg.GradAccum + k)
		targets += windows[k].Targets()
	}
	if targets == 0 {
		return 0, 0, 0, fmt.Errorf("lora: step %d has no target tokens (are all tokens masked?)", st.step+1)
	}
	// Dropout masks come from a stream seeded by (seed, step): resumable.
	rng := rand.New(rand.NewPCG(cfg.Seed^0xd50f, uint64(st.step)+1))
	for _, w := range windows {
		e.prepare(w, &t.in, true)
		if t.in.targets == 0 {
			continue
		}
		drop := rng.Uint64() // the window's dropout masks
		l, err := e.trainWindow(&t.in, targets, drop, t.gA, t.gB)
		if err != nil {
			return 0, 0, 0, err
		}
		loss += l * float64(t.in.targets) / float64(targets)
		tokens += len(w.Tokens)
	}
	return loss, t.finishStep(), tokens, nil
}

// threads sets the threads of the next graphs: Config.Threads when fixed,
// else as many of them as the machine has cores free right now.
func (t *trainer) threads() {
	n := t.cfg.Threads
	if !t.cfg.FixedThreads {
		n = cpuload.Threads(n)
	}
	t.e.setThreads(n)
}

// adamw applies one AdamW step (PyTorch's formulation, decoupled weight
// decay) to every LoRA value, with gradients scaled by clip.
func (t *trainer) adamw(clip float64) {
	cfg, st := t.cfg, t.st
	step := float64(st.step + 1)
	b1, b2 := cfg.Beta1, cfg.Beta2
	c1, c2 := 1-math.Pow(b1, step), 1-math.Pow(b2, step)
	lr, wd, eps := t.lr, cfg.WeightDecay, cfg.Epsilon
	for i := range st.params.Pairs {
		p := &st.params.Pairs[i]
		m, v := st.m[i], st.v[i]
		update := func(w []float32, g []float32, off int) {
			for j := range w {
				gj := float64(g[j]) * clip
				mj := b1*float64(m[off+j]) + (1-b1)*gj
				vj := b2*float64(v[off+j]) + (1-b2)*gj*gj
				m[off+j], v[off+j] = float32(mj), float32(vj)
				wj := float64(w[j]) * (1 - lr*wd)
				w[j] = float32(wj - lr*(mj/c1)/(math.Sqrt(vj/c2)+eps))
			}
		}
		update(p.A, t.gA[i], 0)
		update(p.B, t.gB[i], len(p.A))
	}
}

// valSample chooses the validation windows a pass reads, by their index in
// val: n of those that hold targets, at random with seed, in their order;
// all of them when n is 0 or not below their number, of.
func valSample(val []Window, n int, seed uint64) (idx []int, of int) {
	for i := range val {
		if val[i].Targets() > 0 {
			idx = append(idx, i)
		}
	}
	of = len(idx)
	if n <= 0 || n >= of {
		return idx, of
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a1_da7e))
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	idx = idx[:n]
	slices.Sort(idx)
	return idx, of
}

// validate is the mean loss over every target of the validation windows
// valSample chose.
func (t *trainer) validate() (float64, error) {
	start := time.Now()
	defer t.passDone(start)
	t.threads()
	t.st.valPasses++
	sum, n := 0.0, 0
	for _, i := range t.valIdx {
		t.e.prepare(&t.data.Val[i], &t.in, true)
		if t.in.targets == 0 {
			continue
		}
		l, err := t.e.lossWindow(&t.in)
		if err != nil {
			return 0, err
		}
		sum += l * float64(t.in.targets)
		n += t.in.targets
	}
	if n == 0 {
		return 0, errors.New("lora: the validation windows hold no target tokens")
	}
	return sum / float64(n), nil
}

// passDone accounts for a validation pass begun at start.
func (t *trainer) passDone(start time.Time) {
	d := time.Since(start)
	t.st.valTime += d
	t.passesTime += d
	t.passesRun++
	t.lastPass = d
}

// validateAny runs the validation pass of the run's method: the mean loss,
// and for DPO the rewards.
func (t *trainer) validateAny() (float64, *Rewards, error) {
	if t.cfg.Method == MethodDPO {
		l, rw, err := t.validateDPO()
		return l, &rw, err
	}
	l, err := t.validate()
	return l, nil, err
}

func addTo(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}

func sumSquares(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

// metricsFile appends one JSON object per step; on resume it first drops
// the lines of steps after the checkpoint, so the file reads like one
// uninterrupted run.
type metricsFile struct{ f *os.File }

func openMetrics(path string, fromStep int) (*metricsFile, error) {
	var keep []byte
	if fromStep > 0 {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(old))
		for {
			var m struct {
				Step int `json:"step"`
			}
			if err := dec.Decode(&m); err != nil || m.Step > fromStep {
				break
			}
			keep = old[:dec.InputOffset()]
		}
		if len(keep) > 0 && keep[len(keep)-1] != '\n' {
			keep = append(keep, '\n')
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, keep, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &metricsFile{f: f}, nil
}

func (m *metricsFile) write(x Metrics) error {
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	_, err = m.f.Write(append(b, '\n'))
	return err
}

func (m *metricsFile) Close() error { return m.f.Close() }

// writeInfo writes the adapter's Info: what it is and how it was made.
func writeInfo(basePath string, cfg *Config, res *Result) error {
	sum := cfg.BaseSHA256
	if sum == "" {
		var err error
		if sum, _, err = filehash.SHA256(basePath); err != nil {
			return err
		}
	}
	if abs, err := filepath.Abs(basePath); err == nil {
		basePath = abs
	}
	var digest string
	if f, err := gguf.Open(res.Adapter); err == nil {
		digest, _ = f.String(gguf.TensorDataKey)
	}
	info := &adapters.Info{
		Format:   adapters.InfoFormat,
		Adapter:  filepath.Base(res.Adapter),
		Base:     adapters.BaseInfo{Path: basePath, SHA256: sum},
		LoRA:     adapters.LoRAInfo{Targets: cfg.Targets, AddedTargets: cfg.AddedTargets, Rank: cfg.Rank, Alpha: cfg.Alpha, RSLoRA: cfg.RSLoRA, Scale: float64(cfg.scale()), Dropout: cfg.Dropout},
		Training: res.Training,
		Optimizer: adapters.Optimizer{Name: "adamw", LR: cfg.LearningRate, Schedule: cfg.Schedule, WarmupSteps: cfg.WarmupSteps, WeightDecay: cfg.WeightDecay,
			Betas: []float64{cfg.Beta1, cfg.Beta2}, Eps: cfg.Epsilon, GradAccum: cfg.GradAccum, ClipNorm: cfg.ClipNorm, Seed: cfg.Seed},
		Recipe:           cfg.Meta,
		TensorDataSHA256: digest,
		WrittenUTC:       time.Now().UTC().Format(time.RFC3339),
	}
	return adapters.WriteInfo(adapters.InfoPath(res.Adapter), info)
}
