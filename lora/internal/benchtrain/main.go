// Command benchtrain measures LoRA training speed on the shapes the project
// tracks: tokens/s, the FLOP/s the training step achieves, that figure as a
// fraction of ggml's own F32 matrix-product FLOP/s measured in the same run
// (the machine's practical peak), and peak RSS, on the whole-window graph
// and on the checkpointed path side by side. -trained F makes the windows
// SFT-like (packed examples whose prompts, 1-F of their tokens, are
// masked); -contention measures speed beside other work instead. Besides
// random test models of the tracked shapes it trains the real
// SmolLM2-135M-Instruct from the shared folder, its Q4_1 file as it is and
// an F32 copy (written once into -cache); -only smollm2 runs those rows
// alone. Each measurement runs in a child process so its peak RSS is its
// own; the model files are written before, by the parent. Run it through
// `make bench-train` (BENCH_FLAGS=...).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/lora/internal/benchmodel"
)

type shape struct {
	Name  string
	Model string // shared model file, or "" for a test model
	F32   bool   // train on an F32 copy of Model (every weight dequantized)
	Cfg   testmodel.Config
	Ctx   int
	Rank  int  // default 8
	Alpha int  // default 16
	Heavy bool // only with -only naming it: minutes per step
}

var shapes = []shape{
	{Name: "stories260K F32 ctx 256", Model: "models/stories260K.gguf", Ctx: 256},
	{Name: "58M F32 ctx 256", Cfg: testmodel.Config{Layers: 8, Embd: 512, Heads: 8, KVHeads: 8, FF: 1376, VocabSize: 32000, Type: "f32"}, Ctx: 256},
	{Name: "135M F32 ctx 512", Cfg: smol("f32"), Ctx: 512},
	{Name: "135M Q8_0 ctx 512", Cfg: smol("q8_0"), Ctx: 512},
	{Name: "135M F32 ctx 1024", Cfg: smol("f32"), Ctx: 1024},
	{Name: "135M Q8_0 ctx 1024", Cfg: smol("q8_0"), Ctx: 1024},
	// The real SmolLM2-135M-Instruct (tied head): its Q4_1 file as it is,
	// and the same weights dequantized to F32.
	{Name: "SmolLM2 Q4_1 ctx 512 r16", Model: benchmodel.SmolLM2, Ctx: 512, Rank: 16, Alpha: 32},
	{Name: "SmolLM2 F32 ctx 512 r16", Model: benchmodel.SmolLM2, F32: true, Ctx: 512, Rank: 16, Alpha: 32},
	{Name: "1B Q8_0 ctx 1024", Cfg: llama1B(), Ctx: 1024, Rank: 16, Heavy: true},
	// The GPU check's shapes: F16 weights, LoRA r16 on all seven targets.
	{Name: "135M F16 ctx 1024 r16", Cfg: smol("f16"), Ctx: 1024, Rank: 16, Heavy: true},
	{Name: "1B F16 ctx 1024 r16", Cfg: llama1BF16(), Ctx: 1024, Rank: 16, Heavy: true},
	{Name: "1B Q8_0 ctx 2048", Cfg: llama1B(), Ctx: 2048, Rank: 16, Heavy: true},
	{Name: "1B Q8_0 ctx 4096", Cfg: llama1B(), Ctx: 4096, Rank: 16, Heavy: true},
	// Llama-3.2-1B as it is: the head tied to the token embedding.
	{Name: "1B tied Q8_0 ctx 2048", Cfg: llama1BTied(), Ctx: 2048, Rank: 16, Heavy: true},
}

// llama1B is Llama-3.2-1B's shape (its head tied to the embeddings).
func llama1B() testmodel.Config {
	return testmodel.Config{Layers: 16, Embd: 2048, Heads: 32, KVHeads: 8, FF: 8192, VocabSize: 128256, Context: 8192, Type: "q8_0"}
}

// llama1BTied is llama1B with the head tied to the token embedding, as
// Llama-3.2-1B has it.
func llama1BTied() testmodel.Config {
	c := llama1B()
	c.TiedOutput = true
	return c
}

// llama1BF16 is llama1B with F16 weights.
func llama1BF16() testmodel.Config {
	c := llama1B()
	c.Type = "f16"
	return c
}

// smol is SmolLM2-135M's shape.
func smol(typ string) testmodel.Config {
	return testmodel.Config{Layers: 30, Embd: 576, Heads: 9, KVHeads: 3, FF: 1536, VocabSize: 49152, Context: 2048, Type: typ}
}

type result struct {
	Shape        string  `json:"shape"`
	Path         string  `json:"path"`
	Trained      float64 `json:"trained"`
	TokensPerSec float64 `json:"tokens_per_s"`
	TrainedPerS  float64 `json:"trained_tokens_per_s"`
	Estimate     int64   `json:"estimate_bytes"`
	StepSec      float64 `json:"step_s"`
	FLOPPerStep  float64 `json:"flop_per_step"`
	FLOPs        float64 `json:"flop_per_s"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	ValSec       float64 `json:"val_s_per_window,omitempty"`
	Profile      string  `json:"profile,omitempty"`
	Error        string  `json:"error,omitempty"`
}

// options are what the parent passes to each child.
type options struct {
	device                 string
	steps, warmup, threads int
	cache, mode            string
	targets, precision     string
	trained, dropout       float64
	fixed, profile, val    bool
}

func (o options) args() []string {
	return []string{"-steps", fmt.Sprint(o.steps), "-warmup", fmt.Sprint(o.warmup), "-threads", fmt.Sprint(o.threads),
		"-cache", o.cache, "-trained", fmt.Sprint(o.trained), "-fixed-threads=" + fmt.Sprint(o.fixed), "-device", o.device, "-targets", o.targets, "-precision", o.precision, "-dropout", fmt.Sprint(o.dropout), "-profile=" + fmt.Sprint(o.profile), "-val=" + fmt.Sprint(o.val)}
}

func main() {
	child := flag.Int("shape", -1, "run one shape (child mode)")
	var o options
	flag.IntVar(&o.steps, "steps", 6, "measured optimizer steps per shape")
	flag.IntVar(&o.warmup, "warmup", 2, "warm-up steps before them")
	flag.IntVar(&o.threads, "threads", runtime.NumCPU(), "threads")
	flag.StringVar(&o.cache, "cache", filepath.Join(os.TempDir(), "finetune-bench"), "folder for the generated test models and F32 copies")
	flag.StringVar(&o.mode, "checkpointing", "all", "old (whole-window graph, the head over every row, as before), off (whole-window graph), on (checkpointed), a comma-separated list of them, or all")
	trainedList := flag.String("trained", "1", "fraction of each window's tokens that are targets (SFT data: prompts masked); a comma-separated list runs each")
	flag.StringVar(&o.device, "device", "cpu", "where to train: cpu, auto, cuda[:N] (backend libraries from FINETUNE_LIB_PATH, then bin/lib)")
	flag.StringVar(&o.targets, "targets", "", "the LoRA targets, comma-separated (default: the seven projections; all: with output and token_embd)")
	flag.StringVar(&o.precision, "precision", "f32", "train.precision: f32, bf16 or auto")
	flag.Float64Var(&o.dropout, "dropout", 0, "LoRA dropout (the shipped recipes: 0.05)")
	flag.BoolVar(&o.profile, "profile", false, "time every graph node of the measured steps (computed one node at a time) and print the time per op kind")
	flag.BoolVar(&o.val, "val", false, "also time a validation pass over the windows after every step (seconds per window)")
	flag.BoolVar(&o.fixed, "fixed-threads", true, "compute with exactly -threads threads (false: only the cores free at each step)")
	only := flag.String("only", "", "run only shapes whose name contains this, in any case (smollm2: the real model's rows; heavy shapes run only when named)")
	peakOnly := flag.Bool("peak", false, "measure the matmul peak only (child mode)")
	kernels := flag.Bool("kernels", false, "measure ggml's matrix product per weight type at SmolLM2's shapes and exit")
	contention := flag.Bool("contention", false, "measure tokens/s alone, beside a busy process and two runs at once")
	busy := flag.Bool("busy", false, "spin one thread until killed (child mode)")
	flag.Parse()
	fractions, err := parseFractions(*trainedList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtrain: -trained:", err)
		os.Exit(2)
	}
	o.trained = fractions[0]
	modes, err := parseModes(o.mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtrain: -checkpointing:", err)
		os.Exit(2)
	}
	if o.device != "cpu" {
		ggml.LoadBackends(append(filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH")), "bin/lib"))
	}
	switch {
	case *busy:
		for {
		}
	case *peakOnly:
		fmt.Println(matmulPeak(o.threads))
		return
	case *kernels:
		fmt.Printf("ggml mul_mat GFLOP/s, %d threads, best of 8 (weight [K, M] of the type, input F32 [K, N])\n", o.threads)
		fmt.Printf("%-22s %8s %8s %8s %8s %8s\n", "K x M x N", "f32", "f16", "bf16", "q8_0", "q4_1")
		for _, d := range [][3]int{{576, 1536, 512}, {1536, 576, 512}, {576, 49152, 256}, {2048, 2048, 256}} {
			fmt.Printf("%-22s", fmt.Sprintf("%d x %d x %d", d[0], d[1], d[2]))
			for _, t := range []ggml.Type{ggml.TypeF32, ggml.TypeF16, ggml.TypeBF16, ggml.TypeQ8_0, ggml.TypeQ4_1} {
				fmt.Printf(" %8.1f", matmulRate(o.threads, t, d[0], d[1], d[2])/1e9)
			}
			fmt.Println()
		}
		return
	case *child >= 0:
		r := runShape(shapes[*child], o)
		json.NewEncoder(os.Stdout).Encode(r)
		return
	case *contention:
		runContention(o)
		return
	}
	// The model files first, here, so that no child's time or peak RSS
	// includes writing one. A row whose model is not there is skipped,
	// said once per model.
	var run []int
	skipped := map[string][]string{}
	var missing []string
	for i, s := range shapes {
		if *only != "" && !strings.Contains(strings.ToLower(s.Name), strings.ToLower(*only)) || *only == "" && s.Heavy {
			continue
		}
		t := time.Now()
		path, wrote, err := modelFile(s, o.cache)
		if err != nil {
			if s.Model == "" {
				fmt.Fprintf(os.Stderr, "benchtrain: %s: %v\n", s.Name, err)
				os.Exit(1)
			}
			if skipped[err.Error()] == nil {
				missing = append(missing, err.Error())
			}
			skipped[err.Error()] = append(skipped[err.Error()], s.Name)
			continue
		}
		if wrote {
			fmt.Printf("%s: wrote %s (%.0f s)\n", s.Name, path, time.Since(t).Seconds())
		}
		run = append(run, i)
	}
	for _, e := range missing {
		fmt.Printf("skipped %s: %s\n", strings.Join(skipped[e], ", "), e)
	}
	if len(run) == 0 {
		return
	}
	// Every measurement runs in a child process of its own, so no ggml
	// worker threads of one measurement are left to compete with the next.
	exe, _ := os.Executable()
	out, err := exec.Command(exe, "-peak", "-threads", fmt.Sprint(o.threads)).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtrain: measuring the matmul peak:", err)
		os.Exit(1)
	}
	var peak float64
	fmt.Sscan(string(out), &peak)
	fmt.Printf("ggml F32 matrix product (2048x2048 by 2048x256, %d threads): %.1f GFLOP/s — the practical peak\n", o.threads, peak/1e9)
	fmt.Printf("%d warm-up + %d measured steps (median); trained: the fraction of each window's tokens that are targets\n\n", o.warmup, o.steps)
	fmt.Printf("%-24s %7s %-6s %10s %10s %9s %10s %8s %10s %10s\n", "shape", "trained", "path", "tokens/s", "trained/s", "step s", "GFLOP/s", "of peak", "peak RSS", "estimate")
	for _, i := range run {
		s := shapes[i]
		for _, trained := range fractions {
			for _, mode := range modes {
				co := o
				co.mode, co.trained = mode, trained
				out, err := exec.Command(exe, append([]string{"-shape", fmt.Sprint(i), "-checkpointing", mode}, co.args()...)...).Output()
				var r result
				if err == nil {
					err = json.Unmarshal(out, &r)
				}
				if err == nil && r.Error != "" {
					err = errors.New(r.Error)
				}
				if err != nil {
					fmt.Printf("%-24s %6.0f%% %-6s failed: %v\n", s.Name, 100*trained, pathName(mode), err)
					continue
				}
				fmt.Printf("%-24s %6.0f%% %-6s %10.1f %10.1f %9.2f %10.1f %7.1f%% %6.0f MiB %6.0f MiB", s.Name, 100*trained, pathName(mode), r.TokensPerSec, r.TrainedPerS, r.StepSec,
					r.FLOPs/1e9, 100*r.FLOPs/peak, float64(r.PeakRSS)/(1<<20), float64(r.Estimate)/(1<<20))
				if r.ValSec > 0 {
					fmt.Printf("  validation %.2f s/window", r.ValSec)
				}
				fmt.Println()
				if r.Profile != "" {
					fmt.Println(r.Profile)
				}
			}
		}
	}
	fmt.Println("\nFLOP counted per step (the same work on both paths; the checkpointed path's recomputed forward")
	fmt.Println("pass is not counted): 4·T·N (forward and input gradients of every matrix product with frozen")
	fmt.Println("weights, output head included) + 12·T²·E·L (attention forward and backward) + 8·T·r·Σ(n_in+n_out) (LoRA).")
}

// parseFractions reads -trained: fractions in (0, 1], comma-separated.
func parseFractions(s string) ([]float64, error) {
	var fs []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || v > 1 {
			return nil, fmt.Errorf("%q is not a fraction in (0, 1]", f)
		}
		fs = append(fs, v)
	}
	return fs, nil
}

// parseModes reads -checkpointing: all, or a comma-separated list of old,
// off and on.
func parseModes(s string) ([]string, error) {
	if s == "all" {
		return []string{"old", "off", "on"}, nil
	}
	var ms []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if m != "old" && m != "off" && m != "on" {
			return nil, fmt.Errorf("%q is none of old, off, on, all", m)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// modelFile is the file shape s trains on, written first when it is a
// test model or an F32 copy not written yet (wrote says so).
func modelFile(s shape, cache string) (path string, wrote bool, err error) {
	c := s.Cfg
	tied := ""
	if c.TiedOutput {
		tied = "-tied"
	}
	return benchmodel.File(s.Model, s.F32, c, cache, fmt.Sprintf("L%d-E%d-H%d-%d-FF%d-V%d-%s%s.gguf", c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.VocabSize, c.Type, tied))
}

func pathName(mode string) string {
	switch mode {
	case "on":
		return "ckpt"
	case "old":
		return "old"
	}
	return "whole"
}

// runContention trains stories260K (the shipped recipe's shape) alone,
// beside one process spinning a thread, and as two runs at once, with
// fixed threads (ggml's pool as it is) and with threads taken from the
// cores free at each step.
func runContention(o options) {
	exe, _ := os.Executable()
	idx := -1
	for i, s := range shapes {
		if s.Model == "models/stories260K.gguf" {
			idx = i
		}
	}
	run := func(fixed bool, n int, busy bool) ([]result, error) {
		co := o
		co.fixed = fixed
		co.mode = "off"
		var stop func()
		if busy {
			b := exec.Command(exe, "-busy")
			if err := b.Start(); err != nil {
				return nil, err
			}
			stop = func() { b.Process.Kill(); b.Wait() }
			time.Sleep(200 * time.Millisecond)
		}
		cmds := make([]*exec.Cmd, n)
		outs := make([]*bytes.Buffer, n)
		for i := range cmds {
			cmds[i] = exec.Command(exe, append([]string{"-shape", fmt.Sprint(idx), "-checkpointing", co.mode}, co.args()...)...)
			outs[i] = &bytes.Buffer{}
			cmds[i].Stdout = outs[i]
			if err := cmds[i].Start(); err != nil {
				return nil, err
			}
		}
		var rs []result
		var firstErr error
		for i, c := range cmds {
			err := c.Wait()
			var r result
			if err == nil {
				err = json.Unmarshal(outs[i].Bytes(), &r)
			}
			if err == nil && r.Error != "" {
				err = errors.New(r.Error)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			rs = append(rs, r)
		}
		if stop != nil {
			stop()
		}
		return rs, firstErr
	}
	fmt.Printf("stories260K ctx 256, %d threads at most, %d measured steps per run\n\n", o.threads, o.steps)
	fmt.Printf("%-14s %12s %14s %10s %16s %10s\n", "threads", "alone tok/s", "beside 1 busy", "ratio", "two at once (sum)", "ratio")
	for _, fixed := range []bool{true, false} {
		name := "adaptive"
		if fixed {
			name = "fixed"
		}
		alone, err := run(fixed, 1, false)
		if err != nil {
			fmt.Printf("%-14s failed: %v\n", name, err)
			continue
		}
		busy, err := run(fixed, 1, true)
		if err != nil {
			fmt.Printf("%-14s failed: %v\n", name, err)
			continue
		}
		two, err := run(fixed, 2, false)
		if err != nil {
			fmt.Printf("%-14s failed: %v\n", name, err)
			continue
		}
		a, b, sum := alone[0].TokensPerSec, busy[0].TokensPerSec, two[0].TokensPerSec+two[1].TokensPerSec
		fmt.Printf("%-14s %12.0f %14.0f %9.2fx %16.0f %9.2fx\n", name, a, b, b/a, sum, sum/a)
	}
}

// matmulPeak measures ggml's F32 mul_mat FLOP/s, best of several runs.
func matmulPeak(threads int) float64 { return matmulRate(threads, ggml.TypeF32, 2048, 2048, 256) }

// matmulRate measures ggml's mul_mat FLOP/s for a weight [K, M] of type
// typ by an F32 input [K, N], best of several runs.
func matmulRate(threads int, typ ggml.Type, K, M, N int) float64 {
	be, err := ggml.NewCPUBackend(threads)
	if err != nil {
		panic(err)
	}
	defer be.Close()
	x, _ := ggml.NewCtx(16*ggml.TensorOverhead()+ggml.GraphOverhead(16, false), true)
	defer x.Close()
	a := x.New2D(typ, K, M)
	b := x.New2D(ggml.TypeF32, K, N)
	a.SetInput()
	b.SetInput()
	c := x.MulMat(a, b)
	c.SetOutput()
	g := x.NewGraph(16, false)
	g.Expand(c)
	s, err := ggml.NewSched([]*ggml.Backend{be}, 16)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	va, vb := make([]float32, K*M), make([]float32, K*N)
	for i := range va {
		va[i] = rng.Float32()
	}
	for i := range vb {
		vb[i] = rng.Float32()
	}
	if typ == ggml.TypeF32 {
		a.SetF32(va)
	} else {
		enc, err := ggml.Encode(typ, va, K)
		if err != nil {
			panic(err)
		}
		a.SetBytes(enc)
	}
	b.SetF32(vb)
	best := 0.0
	for i := 0; i < 8; i++ {
		t := time.Now()
		if err := s.Compute(g); err != nil {
			panic(err)
		}
		best = max(best, 2*float64(M)*float64(K)*float64(N)/time.Since(t).Seconds())
	}
	return best
}

func runShape(s shape, o options) (r result) {
	r.Shape, r.Path, r.Trained = s.Name, pathName(o.mode), o.trained
	steps, threads := o.steps, o.threads
	rank, alpha := s.Rank, s.Alpha
	if rank == 0 {
		rank = 8
	}
	if alpha == 0 {
		alpha = 16
	}
	defer func() {
		if e := recover(); e != nil {
			r.Error = fmt.Sprint(e)
		}
	}()
	path, _, err := modelFile(s, o.cache)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	f, err := gguf.Open(path)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	h, _ := modelinfo.ParseHyper(f)
	T := s.Ctx
	rng := rand.New(rand.NewPCG(7, 7))
	windows := benchWindows(rng, T, h.VocabSize, o.trained)
	trained := 0
	for i := range windows {
		trained += windows[i].Targets()
	}
	targets := lora.Targets
	switch o.targets {
	case "":
	case "all":
		targets = append(slices.Clone(lora.Targets), lora.ModelTargets...)
	default:
		targets = strings.Split(o.targets, ",")
	}
	mem, err := lora.EstimateMemory(path, T, lora.MemoryOptions{Rank: rank, Targets: targets, Dropout: o.dropout, Precision: o.precision})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Estimate = mem.WholeWindow
	if o.mode == "on" {
		r.Estimate = mem.Checkpointed
	}
	out, _ := os.MkdirTemp("", "benchtrain-run-*")
	defer os.RemoveAll(out)
	var times []float64
	ckpt := o.mode
	if ckpt == "old" {
		ckpt = "off"
	}
	cfg := lora.Config{Rank: rank, Alpha: float64(alpha), MaxSteps: o.warmup + steps, Threads: threads, FixedThreads: o.fixed, Checkpointing: ckpt, EveryRow: o.mode == "old", Seed: 1, Device: o.device, Targets: targets, Dropout: o.dropout, Precision: o.precision,
		Files: lora.Files{Checkpoint: filepath.Join(out, "checkpoint.gguf"), Metrics: filepath.Join(out, "metrics.jsonl"), Adapter: filepath.Join(out, "adapter.gguf")}}
	if os.Getenv("BENCH_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	data := lora.Data{Train: windows}
	if o.val {
		data.Val, cfg.EvalEvery = windows, 1
	}
	if o.profile {
		cfg.Profile = ggml.NewProfile()
		defer cfg.Profile.Close()
	}
	var vals []float64
	_, err = lora.Train(context.Background(), path, cfg, data, func(m lora.Metrics) {
		if m.Step > o.warmup {
			times = append(times, float64(T)/m.TokensPerSec)
			if m.ValWindows > 0 {
				vals = append(vals, m.ValSec/float64(m.ValWindows))
			}
		}
		if m.Step == o.warmup && cfg.Profile != nil {
			cfg.Profile.Reset()
		}
	})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	sort.Float64s(times)
	step := times[len(times)/2]
	r.StepSec = step
	r.TokensPerSec = float64(T) / step
	r.TrainedPerS = float64(trained) / float64(len(windows)) / step
	r.FLOPPerStep = stepFLOPs(f, h, T, cfg.Rank)
	r.FLOPs = r.FLOPPerStep / step
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.PeakRSS = ru.Maxrss * 1024
	if len(vals) > 0 {
		sort.Float64s(vals)
		r.ValSec = vals[len(vals)/2]
	}
	if cfg.Profile != nil {
		r.Profile = cfg.Profile.String()
	}
	return r
}

// benchWindows are 4 windows of T random tokens. With trained < 1 each is
// packed with examples of 64-192 tokens whose first 1-trained of tokens
// are a masked prompt, as SFT data is.
func benchWindows(rng *rand.Rand, T, vocab int, trained float64) []lora.Window {
	var ws []lora.Window
	for i := 0; i < 4; i++ {
		w := lora.Window{Tokens: make([]int32, T), Weights: make([]float32, T), Pos: make([]int32, T), Seq: make([]int32, T)}
		for j := range w.Tokens {
			w.Tokens[j] = int32(3 + rng.IntN(vocab-3))
			w.Weights[j], w.Pos[j] = 1, int32(j)
		}
		if trained < 1 {
			seq := int32(0)
			for start := 0; start < T; seq++ {
				n := min(T-start, 64+rng.IntN(129))
				prompt := int(float64(n) * (1 - trained))
				for j := 0; j < n; j++ {
					w.Pos[start+j], w.Seq[start+j] = int32(j), seq
					if j <= prompt {
						w.Weights[start+j] = 0
					}
				}
				start += n
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// stepFLOPs counts the floating-point operations of one training step.
func stepFLOPs(f *gguf.File, h modelinfo.Hyper, T, rank int) float64 {
	var nMM, loraIO float64
	for _, t := range f.Tensors {
		if len(t.Dims) != 2 || t.Name == "token_embd.weight" && hasOutput(f) {
			continue
		}
		nMM += float64(t.Dims[0] * t.Dims[1])
		loraIO += float64(t.Dims[0] + t.Dims[1])
	}
	// LoRA adapts the seven projections, not the output head.
	loraIO -= float64(h.Embedding + h.VocabSize)
	Tf := float64(T)
	return 4*Tf*nMM + 12*Tf*Tf*float64(h.Embedding*h.Layers) + 8*Tf*float64(rank)*loraIO
}

func hasOutput(f *gguf.File) bool {
	_, ok := f.Tensor("output.weight")
	return ok
}
