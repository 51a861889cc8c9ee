package lora

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/internal/ggml"
)

// Config holds every setting of a training run. Zero values take the
// defaults documented on each field (see Defaults).
type Config struct {
	// Targets are the projections to adapt (default: all seven).
	Targets []string
	// Device is where the graphs run: "auto" (default: the first GPU, else
	// the CPU), "cpu", "cuda[:N]", or a device by ggml's name (OpenDevice).
	Device  string
	Rank    int     // default 8
	Alpha   float64 // default 16
	RSLoRA  bool    // scale alpha/sqrt(rank) instead of alpha/rank
	Dropout float64 // on the LoRA input; default 0

	LearningRate float64 // default 2e-4
	Schedule     string  // "constant", "linear" or "cosine" (default)
	WarmupSteps  int
	WeightDecay  float64 // AdamW decoupled weight decay; default 0
	Beta1        float64 // default 0.9
	Beta2        float64 // default 0.999
	Epsilon      float64 // default 1e-8
	GradAccum    int     // windows per optimizer step; default 1
	ClipNorm     float64 // global gradient norm clip; default 1, negative: off
	MaxSteps     int     // optimizer steps; 0: Epochs over the data
	Epochs       float64 // default 1 when MaxSteps is 0

	EvalEvery int // validation loss every N steps; 0: only at the end
	// ValWindows is how many validation windows a pass reads: a random
	// sample of that many (of those with targets), seeded by Seed, the
	// same windows at every pass and after a resume, so that the losses
	// compare; 0: every window.
	ValWindows      int
	Patience        int // stop after N evaluations without improvement; 0: never
	CheckpointEvery int // 0: only at the end
	Seed            uint64
	Threads         int // at most this many threads; 0: every core
	// FixedThreads computes with exactly Threads threads. By default each
	// step takes only the cores that other running threads leave free
	// (ggml's workers spin while they wait for each other, so a thread on
	// a busy core stalls all of them).
	FixedThreads bool
	// Checkpointing recomputes each layer's activations in the backward
	// pass instead of keeping them all (see segments.go): "on", "off", or
	// "auto" (the default: on when the whole-window graph would take more
	// than a third of the machine's memory).
	Checkpointing string
	// Precision of the CPU's products with the frozen weights: "f32",
	// "bf16" (the weights' copies in BF16, the products' inputs rounded to
	// BF16, sums in F32; on AMX tiles where the CPU has them), or "auto"
	// (the default: see ResolvePrecision; bf16 for a quantized base on a
	// CPU with AMX, else f32).
	Precision string
	// EveryRow runs the output head and the loss over every row of a
	// window, not only the rows that predict a target, as the engine did
	// before (for benchmarks that compare the two).
	EveryRow bool
	// Profile, when set, times every node of every graph the run computes
	// (one node at a time, so slower; for benchmarks).
	Profile *ggml.Profile

	// Files are where the run's products go.
	// Method is the training objective: MethodSFT ("" too) or MethodDPO,
	// which trains on Data's preference pairs with Beta (default 0.1)
	// and, when RPOAlpha > 0, RPO's cross-entropy term weighted by it:
	// each chosen answer's mean cross-entropy per token, averaged over the
	// pairs (TRL's "sft" loss with one pair a micro-batch).
	Method   string
	Beta     float64
	RPOAlpha float64
	// Init is an adapter file to start from (its rank, targets and scale
	// must be the run's); "": A at random and B zero. For DPO it is also
	// the reference model.
	Init string

	Files Files
	// Resume continues from Files.Checkpoint.
	Resume bool
	// BaseSHA256 is the base file's digest when the caller knows it (else
	// Train computes it for the adapter's Info).
	BaseSHA256 string
	// Meta is stored in the adapter's Info as its recipe.
	Meta any
	// Started is when the run's work began in this process (reading its
	// data, say), where its wall time starts; zero: when Train is called.
	Started time.Time
	// AddedTargets are the Targets the run added to the recipe's defaults,
	// recorded in the adapter's Info.
	AddedTargets []string
	// Logger hears what happens before the first step (the path chosen,
	// the weights' transposed copies being made); nil: nothing is logged.
	Logger *slog.Logger
}

// Files are the paths Train writes (the caller owns the folder and its
// names).
type Files struct {
	Checkpoint string // the checkpoint, every CheckpointEvery steps and at the end
	Metrics    string // one JSON line of Metrics per step (appended to on resume)
	// Adapter is the adapter in llama.cpp's GGUF format; its Info goes
	// beside it (adapters.InfoPath).
	Adapter string
}

// Defaults fills the zero fields of c.
func (c *Config) Defaults() {
	if len(c.Targets) == 0 {
		c.Targets = append([]string(nil), Targets...)
	}
	if c.Rank == 0 {
		c.Rank = 8
	}
	if c.Alpha == 0 {
		c.Alpha = 16
	}
	if c.LearningRate == 0 {
		c.LearningRate = 2e-4
	}
	if c.Schedule == "" {
		c.Schedule = "cosine"
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Epsilon == 0 {
		c.Epsilon = 1e-8
	}
	if c.GradAccum == 0 {
		c.GradAccum = 1
	}
	if c.ClipNorm == 0 {
		c.ClipNorm = 1
	}
	if c.Method == "" {
		c.Method = MethodSFT
	}
	if c.Method == MethodDPO && c.Beta == 0 {
		c.Beta = 0.1
	}
	if c.MaxSteps == 0 && c.Epochs == 0 {
		c.Epochs = 1
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	known := map[string]bool{}
	all := append(slices.Clone(Targets), ModelTargets...)
	for _, t := range all {
		known[t] = true
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if !known[t] {
			return fmt.Errorf("lora: unknown target %q (choose among %s)", t, strings.Join(all, ", "))
		}
		if seen[t] {
			return fmt.Errorf("lora: target %q listed twice", t)
		}
		seen[t] = true
	}
	switch {
	case c.Checkpointing != "" && c.Checkpointing != "auto" && c.Checkpointing != "on" && c.Checkpointing != "off":
		return fmt.Errorf("lora: checkpointing %q: use auto, on or off", c.Checkpointing)
	case c.Precision != "" && c.Precision != "auto" && c.Precision != "f32" && c.Precision != "bf16":
		return fmt.Errorf("lora: precision %q: use auto, f32 or bf16", c.Precision)
	case c.Rank < 1:
		return fmt.Errorf("lora: rank must be at least 1, got %d", c.Rank)
	case c.Alpha <= 0:
		return fmt.Errorf("lora: alpha must be positive, got %g", c.Alpha)
	case c.Dropout < 0 || c.Dropout >= 1:
		return fmt.Errorf("lora: dropout must be in [0, 1), got %g", c.Dropout)
	case c.LearningRate <= 0:
		return fmt.Errorf("lora: learning rate must be positive, got %g", c.LearningRate)
	case c.Schedule != "constant" && c.Schedule != "linear" && c.Schedule != "cosine":
		return fmt.Errorf("lora: schedule %q: use constant, linear or cosine", c.Schedule)
	case c.WarmupSteps < 0 || c.WeightDecay < 0:
		return fmt.Errorf("lora: warmup steps and weight decay must not be negative")
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || c.Epsilon <= 0:
		return fmt.Errorf("lora: AdamW needs 0 <= beta < 1 and epsilon > 0")
	case c.GradAccum < 1:
		return fmt.Errorf("lora: gradient accumulation must be at least 1")
	case c.MaxSteps < 0 || c.Epochs < 0:
		return fmt.Errorf("lora: max steps and epochs must not be negative")
	case c.ValWindows < 0:
		return fmt.Errorf("lora: validation windows must not be negative (0: every window), got %d", c.ValWindows)
	case c.Method != "" && c.Method != MethodSFT && c.Method != MethodDPO:
		return fmt.Errorf("lora: method %q: use sft or dpo", c.Method)
	case c.Method == MethodDPO && (c.Beta <= 0 || math.IsNaN(c.Beta)):
		return fmt.Errorf("lora: DPO's beta must be positive, got %g", c.Beta)
	case c.RPOAlpha < 0 || math.IsNaN(c.RPOAlpha):
		return fmt.Errorf("lora: RPO's alpha must not be negative, got %g", c.RPOAlpha)
	case c.RPOAlpha > 0 && c.Method != MethodDPO:
		return fmt.Errorf("lora: RPO's alpha applies to method dpo only")
	case c.Files.Checkpoint == "" || c.Files.Metrics == "" || c.Files.Adapter == "":
		return fmt.Errorf("lora: Files must name the checkpoint, metrics and adapter files")
	}
	return nil
}

// scale is the LoRA scale.
func (c *Config) scale() float32 {
	if c.RSLoRA {
		return float32(c.Alpha / math.Sqrt(float64(c.Rank)))
	}
	return float32(c.Alpha / float64(c.Rank))
}

// lr is the learning rate at optimizer step (1-based) of total.
func (c *Config) lr(step, total int) float64 {
	if c.WarmupSteps > 0 && step <= c.WarmupSteps {
		return c.LearningRate * float64(step) / float64(c.WarmupSteps)
	}
	if c.Schedule == "constant" || total <= c.WarmupSteps {
		return c.LearningRate
	}
	progress := float64(step-c.WarmupSteps-1) / float64(total-c.WarmupSteps) // in [0, 1): the last step still moves
	switch c.Schedule {
	case "linear":
		return c.LearningRate * (1 - progress)
	default: // cosine
		return c.LearningRate * 0.5 * (1 + math.Cos(math.Pi*progress))
	}
}
