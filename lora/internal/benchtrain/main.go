// Command benchtrain measures LoRA training speed on the shapes the project
// tracks: tokens/s, the FLOP/s the training step achieves, that figure as a
// fraction of ggml's own F32 matrix-product FLOP/s measured in the same run
// (the machine's practical peak), and peak RSS. Each shape runs in a child
// process so its peak RSS is its own. Run it through `make bench-train`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

type shape struct {
	Name  string
	Model string // shared model file, or "" for a test model
	Cfg   testmodel.Config
	Ctx   int
}

var shapes = []shape{
	{Name: "stories260K F32 ctx 256", Model: "models/stories260K.gguf", Ctx: 256},
	{Name: "58M F32 ctx 256", Cfg: testmodel.Config{Layers: 8, Embd: 512, Heads: 8, KVHeads: 8, FF: 1376, VocabSize: 32000, Type: "f32"}, Ctx: 256},
	{Name: "135M F32 ctx 512", Cfg: smol("f32"), Ctx: 512},
	{Name: "135M Q8_0 ctx 512", Cfg: smol("q8_0"), Ctx: 512},
	{Name: "135M F32 ctx 1024", Cfg: smol("f32"), Ctx: 1024},
	{Name: "135M Q8_0 ctx 1024", Cfg: smol("q8_0"), Ctx: 1024},
}

// smol is SmolLM2-135M's shape.
func smol(typ string) testmodel.Config {
	return testmodel.Config{Layers: 30, Embd: 576, Heads: 9, KVHeads: 3, FF: 1536, VocabSize: 49152, Context: 2048, Type: typ}
}

type result struct {
	Shape        string  `json:"shape"`
	TokensPerSec float64 `json:"tokens_per_s"`
	StepSec      float64 `json:"step_s"`
	FLOPPerStep  float64 `json:"flop_per_step"`
	FLOPs        float64 `json:"flop_per_s"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	Error        string  `json:"error,omitempty"`
}

func main() {
	child := flag.Int("shape", -1, "run one shape (child mode)")
	steps := flag.Int("steps", 6, "measured optimizer steps per shape (after 2 warm-up steps)")
	threads := flag.Int("threads", runtime.NumCPU(), "threads")
	cache := flag.String("cache", filepath.Join(os.TempDir(), "finetune-bench"), "folder for the generated test models")
	only := flag.String("only", "", "run only shapes whose name contains this")
	peakOnly := flag.Bool("peak", false, "measure the matmul peak only (child mode)")
	flag.Parse()
	if *peakOnly {
		fmt.Println(matmulPeak(*threads))
		return
	}
	if *child >= 0 {
		r := runShape(shapes[*child], *steps, *threads, *cache)
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	// Every measurement runs in a child process of its own, so no ggml
	// worker threads of one measurement are left to compete with the next.
	exe, _ := os.Executable()
	out, err := exec.Command(exe, "-peak", "-threads", fmt.Sprint(*threads)).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtrain: measuring the matmul peak:", err)
		os.Exit(1)
	}
	var peak float64
	fmt.Sscan(string(out), &peak)
	fmt.Printf("ggml F32 matrix product (2048x2048 by 2048x256, %d threads): %.1f GFLOP/s — the practical peak\n\n", *threads, peak/1e9)
	fmt.Printf("%-24s %12s %10s %14s %9s %10s\n", "shape", "tokens/s", "step s", "GFLOP/s", "of peak", "peak RSS")
	for i, s := range shapes {
		if *only != "" && !contains(s.Name, *only) {
			continue
		}
		out, err := exec.Command(exe, "-shape", fmt.Sprint(i), "-steps", fmt.Sprint(*steps), "-threads", fmt.Sprint(*threads), "-cache", *cache).Output()
		var r result
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil || r.Error != "" {
			fmt.Printf("%-24s failed: %v %s\n", s.Name, err, r.Error)
			continue
		}
		fmt.Printf("%-24s %12.1f %10.2f %14.1f %8.1f%% %7.0f MiB\n", s.Name, r.TokensPerSec, r.StepSec, r.FLOPs/1e9, 100*r.FLOPs/peak, float64(r.PeakRSS)/(1<<20))
	}
	fmt.Println("\nFLOP counted per step: 4·T·N (forward and input gradients of every matrix product with frozen")
	fmt.Println("weights, output head included) + 12·T²·E·L (attention forward and backward) + 8·T·r·Σ(n_in+n_out) (LoRA).")
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// matmulPeak measures ggml's F32 mul_mat FLOP/s, best of several runs.
func matmulPeak(threads int) float64 {
	be, err := ggml.NewCPUBackend(threads)
	if err != nil {
		panic(err)
	}
	defer be.Close()
	const M, K, N = 2048, 2048, 256
	x, _ := ggml.NewCtx(16*ggml.TensorOverhead()+ggml.GraphOverhead(16, false), true)
	defer x.Close()
	a := x.New2D(ggml.TypeF32, K, M)
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
	a.SetF32(va)
	b.SetF32(vb)
	best := 0.0
	for i := 0; i < 8; i++ {
		t := time.Now()
		if err := s.Compute(g); err != nil {
			panic(err)
		}
		best = max(best, 2*M*K*N/time.Since(t).Seconds())
	}
	return best
}

func runShape(s shape, steps, threads int, cache string) (r result) {
	r.Shape = s.Name
	defer func() {
		if e := recover(); e != nil {
			r.Error = fmt.Sprint(e)
		}
	}()
	path := ""
	if s.Model != "" {
		dir := shared.Dir()
		if dir == "" {
			r.Error = "shared folder absent"
			return r
		}
		path = filepath.Join(dir, s.Model)
	} else {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			r.Error = err.Error()
			return r
		}
		c := s.Cfg
		path = filepath.Join(cache, fmt.Sprintf("L%d-E%d-H%d-%d-FF%d-V%d-%s.gguf", c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.VocabSize, c.Type))
		if _, err := os.Stat(path); err != nil {
			if err := testmodel.Write(path, c); err != nil {
				r.Error = err.Error()
				return r
			}
		}
	}
	f, err := gguf.Open(path)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	h, _ := modelinfo.ParseHyper(f)
	T := s.Ctx
	rng := rand.New(rand.NewPCG(7, 7))
	var windows []lora.Window
	for i := 0; i < 4; i++ {
		w := lora.Window{Tokens: make([]int32, T), Weights: make([]float32, T), Pos: make([]int32, T), Seq: make([]int32, T)}
		for j := range w.Tokens {
			w.Tokens[j] = int32(3 + rng.IntN(h.VocabSize-3))
			w.Weights[j], w.Pos[j] = 1, int32(j)
		}
		windows = append(windows, w)
	}
	out, _ := os.MkdirTemp("", "benchtrain-run-*")
	defer os.RemoveAll(out)
	var times []float64
	cfg := lora.Config{Rank: 8, Alpha: 16, MaxSteps: 2 + steps, Threads: threads, Seed: 1, Files: lora.Files{Checkpoint: filepath.Join(out, "checkpoint.gguf"), Metrics: filepath.Join(out, "metrics.jsonl"), Adapter: filepath.Join(out, "adapter.gguf")}}
	_, err = lora.Train(context.Background(), path, cfg, lora.Data{Train: windows}, func(m lora.Metrics) {
		if m.Step > 2 {
			times = append(times, float64(T)/m.TokensPerSec)
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
	r.FLOPPerStep = stepFLOPs(f, h, T, cfg.Rank)
	r.FLOPs = r.FLOPPerStep / step
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.PeakRSS = ru.Maxrss * 1024
	return r
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
