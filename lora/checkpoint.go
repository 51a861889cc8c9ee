package lora

import (
	"fmt"
	"slices"
	"time"

	"github.com/finetune-dev/finetune/internal/gguf"
)

// A checkpoint is a GGUF file holding the LoRA tensors, AdamW's moments,
// the best adapter so far, and the loop's counters. Random streams are
// derived from (seed, step) and the data order from (seed, epoch), so the
// step is the whole RNG and data position.
const ckptVersion = 1

func saveCheckpoint(path string, cfg *Config, st *state) error {
	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.type", Value: "finetune-checkpoint"},
		{Key: "finetune.checkpoint.version", Value: uint32(ckptVersion)},
		{Key: "finetune.checkpoint.step", Value: uint64(st.step)},
		{Key: "finetune.checkpoint.tokens", Value: uint64(st.tokens)},
		{Key: "finetune.checkpoint.elapsed_ns", Value: int64(st.elapsed)},
		{Key: "finetune.checkpoint.steps_ns", Value: int64(st.stepTime)},
		{Key: "finetune.checkpoint.val_ns", Value: int64(st.valTime)},
		{Key: "finetune.checkpoint.best_val", Value: st.bestVal},
		{Key: "finetune.checkpoint.last_loss", Value: st.lastLoss},
		{Key: "finetune.checkpoint.best_step", Value: uint64(st.bestStep)},
		{Key: "finetune.checkpoint.bad_evals", Value: uint64(st.badEvals)},
		{Key: "finetune.checkpoint.val_passes", Value: uint64(st.valPasses)},
		{Key: "finetune.checkpoint.seed", Value: cfg.Seed},
		{Key: "finetune.checkpoint.grad_accum", Value: uint32(cfg.GradAccum)},
		{Key: "finetune.checkpoint.method", Value: cfg.Method},
		{Key: "adapter.lora.rank", Value: uint32(st.params.Rank)},
		{Key: "adapter.lora.alpha", Value: float32(st.params.Alpha)},
		{Key: "adapter.lora.targets", Value: cfg.Targets},
	}
	var ts []gguf.Tensor
	add := func(name string, v []float32) {
		ts = append(ts, gguf.Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: gguf.F32, Data: gguf.F32Data(v)})
	}
	for i, p := range st.params.Pairs {
		n := WeightName(p.Layer, p.Target)
		add(n+".lora_a", p.A)
		add(n+".lora_b", p.B)
		add(n+".adam_m", st.m[i])
		add(n+".adam_v", st.v[i])
		if st.best != nil {
			add(n+".best_a", st.best.Pairs[i].A)
			add(n+".best_b", st.best.Pairs[i].B)
		}
	}
	return gguf.Write(path, gguf.WithTensorDigest(kv, ts), ts)
}

// CheckpointError is a checkpoint that cannot be resumed from: damaged,
// corrupt (its tensor data does not match its digest) or made for other
// settings.
type CheckpointError struct {
	Path string
	Err  error
}

func (e *CheckpointError) Error() string { return e.Err.Error() }
func (e *CheckpointError) Unwrap() error { return e.Err }

func loadCheckpoint(path string, cfg *Config, e *engine) (st *state, err error) {
	defer func() {
		if err != nil {
			err = &CheckpointError{Path: path, Err: err}
		}
	}()
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if t, _ := f.String("general.type"); t != "finetune-checkpoint" {
		return nil, fmt.Errorf("resume: %s is not a finetune checkpoint", path)
	}
	if v, _ := f.Uint("finetune.checkpoint.version"); v != ckptVersion {
		return nil, fmt.Errorf("resume: %s has checkpoint version %d, this finetune reads %d", path, v, ckptVersion)
	}
	if err := f.CheckTensorData(); err != nil {
		return nil, err
	}
	rank, _ := f.Uint("adapter.lora.rank")
	seed, _ := f.Uint("finetune.checkpoint.seed")
	accum, _ := f.Uint("finetune.checkpoint.grad_accum")
	targets, _ := f.Strings("adapter.lora.targets")
	method, ok := f.String("finetune.checkpoint.method")
	if !ok || method == "" {
		method = MethodSFT // written before the key was kept
	}
	switch {
	case method != cfg.Method:
		return nil, fmt.Errorf("resume: %s was made by a %s run, the run asks for %s", path, method, cfg.Method)
	case int(rank) != cfg.Rank:
		return nil, fmt.Errorf("resume: %s was made with rank %d, the run asks for %d", path, rank, cfg.Rank)
	case seed != cfg.Seed:
		return nil, fmt.Errorf("resume: %s was made with seed %d, the run asks for %d", path, seed, cfg.Seed)
	case int(accum) != cfg.GradAccum:
		return nil, fmt.Errorf("resume: %s was made with gradient accumulation %d, the run asks for %d", path, accum, cfg.GradAccum)
	case !slices.Equal(targets, cfg.Targets):
		return nil, fmt.Errorf("resume: %s adapts %v, the run asks for %v", path, targets, cfg.Targets)
	}
	st = &state{}
	step, _ := f.Uint("finetune.checkpoint.step")
	tokens, _ := f.Uint("finetune.checkpoint.tokens")
	elapsed, _ := f.Int("finetune.checkpoint.elapsed_ns")
	stepTime, _ := f.Int("finetune.checkpoint.steps_ns") // 0 in checkpoints written before they were kept
	valTime, _ := f.Int("finetune.checkpoint.val_ns")
	bestStep, _ := f.Uint("finetune.checkpoint.best_step")
	bad, _ := f.Uint("finetune.checkpoint.bad_evals")
	passes, _ := f.Uint("finetune.checkpoint.val_passes") // 0 in checkpoints written before it was kept
	st.step, st.tokens, st.elapsed = int(step), int64(tokens), time.Duration(elapsed)
	st.stepTime, st.valTime = time.Duration(stepTime), time.Duration(valTime)
	st.bestStep, st.badEvals, st.valPasses = int(bestStep), int(bad), int(passes)
	st.bestVal, _ = f.Float("finetune.checkpoint.best_val")
	st.lastLoss, _ = f.Float("finetune.checkpoint.last_loss")
	read := func(name string, n int) ([]float32, error) {
		data, err := f.ReadTensorData(name)
		if err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if len(data) != 4*n {
			return nil, fmt.Errorf("resume: %s: %s holds %d values, expected %d", path, name, len(data)/4, n)
		}
		return gguf.F32Values(data), nil
	}
	st.params = &Params{Rank: cfg.Rank, Alpha: cfg.Alpha, Scale: cfg.scale()}
	_, hasBest := f.Tensor(WeightName(e.pairs[0].layer, e.pairs[0].target) + ".best_a")
	if hasBest {
		st.best = &Params{Rank: cfg.Rank, Alpha: cfg.Alpha, Scale: cfg.scale()}
	}
	for _, pt := range e.pairs {
		n := WeightName(pt.layer, pt.target)
		p := Pair{Layer: pt.layer, Target: pt.target, NIn: pt.nIn, NOut: pt.nOut}
		if p.A, err = read(n+".lora_a", pt.nIn*cfg.Rank); err != nil {
			return nil, err
		}
		if p.B, err = read(n+".lora_b", cfg.Rank*pt.nOut); err != nil {
			return nil, err
		}
		m, err := read(n+".adam_m", len(p.A)+len(p.B))
		if err != nil {
			return nil, err
		}
		v, err := read(n+".adam_v", len(p.A)+len(p.B))
		if err != nil {
			return nil, err
		}
		st.params.Pairs = append(st.params.Pairs, p)
		st.m, st.v = append(st.m, m), append(st.v, v)
		if hasBest {
			b := Pair{Layer: pt.layer, Target: pt.target, NIn: pt.nIn, NOut: pt.nOut}
			if b.A, err = read(n+".best_a", len(p.A)); err != nil {
				return nil, err
			}
			if b.B, err = read(n+".best_b", len(p.B)); err != nil {
				return nil, err
			}
			st.best.Pairs = append(st.best.Pairs, b)
		}
	}
	return st, nil
}
