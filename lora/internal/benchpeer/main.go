// Command benchpeer puts finetune's LoRA training beside the tool a user
// would otherwise pick, Hugging Face PEFT + transformers in PyTorch on the
// CPU (fp32, torch's AdamW), on the same work: the same test-model shapes
// (58M and 135M), windows of the same random tokens at ctx 256 and 512,
// LoRA r8 on all seven projections, the same threads; and the real
// SmolLM2-135M-Instruct from the shared folder at ctx 512 with LoRA r16
// (alpha 32), finetune on its Q4_1 file and on an F32 copy, PEFT on the
// same files (transformers dequantizes them), in fp32 and with bf16
// autocast (-only smollm2 runs those rows alone). It prints tokens/s
// (median optimizer step after two warm-up steps), peak RSS of each side's
// process and the ratio. Every measurement runs in a child process of its
// own, one at a time. Run it through `make bench-peer`; the PEFT side needs
// scripts/install-pyref.sh.
package main

import (
	"bytes"
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
	"strings"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/lora/internal/benchmodel"
)

type shape struct {
	Name  string
	Cfg   testmodel.Config // a random test model of this shape, or
	Model string           // a model file in the shared folder,
	F32   bool             // or its F32 copy (every weight dequantized)
	Ctx   int
	Rank  int  // default 8
	Alpha int  // default 16
	BF16  bool // PEFT also with bf16 autocast
}

func (s shape) lora() (rank, alpha int) {
	rank, alpha = s.Rank, s.Alpha
	if rank == 0 {
		rank = 8
	}
	if alpha == 0 {
		alpha = 16
	}
	return rank, alpha
}

// The shapes of lora/internal/benchtrain: a 58M Llama and SmolLM2-135M's.
var (
	m58    = testmodel.Config{Layers: 8, Embd: 512, Heads: 8, KVHeads: 8, FF: 1376, VocabSize: 32000, Context: 2048, Type: "f32"}
	m135   = testmodel.Config{Layers: 30, Embd: 576, Heads: 9, KVHeads: 3, FF: 1536, VocabSize: 49152, Context: 2048, Type: "f32"}
	shapes = []shape{
		{Name: "58M F32 ctx 256", Cfg: m58, Ctx: 256},
		{Name: "58M F32 ctx 512", Cfg: m58, Ctx: 512},
		{Name: "135M F32 ctx 256", Cfg: m135, Ctx: 256},
		{Name: "135M F32 ctx 512", Cfg: m135, Ctx: 512},
		// The real SmolLM2-135M-Instruct (tied head). PEFT loads the same
		// file as finetune; transformers dequantizes both to the same F32
		// weights, so PEFT's bf16 autocast runs once, on the first.
		{Name: "SmolLM2 Q4_1 ctx 512 r16", Model: benchmodel.SmolLM2, Ctx: 512, Rank: 16, Alpha: 32, BF16: true},
		{Name: "SmolLM2 F32 ctx 512 r16", Model: benchmodel.SmolLM2, F32: true, Ctx: 512, Rank: 16, Alpha: 32},
	}
)

const (
	windowsPerShape = 4
	warmupSteps     = 2
)

func main() {
	child := flag.Int("shape", -1, "run one shape with finetune (child mode)")
	steps := flag.Int("steps", 6, "measured optimizer steps per shape and side (after 2 warm-up steps)")
	threads := flag.Int("threads", runtime.NumCPU(), "threads, for both sides")
	cache := flag.String("cache", filepath.Join(os.TempDir(), "finetune-bench"), "folder for the generated test models and F32 copies")
	only := flag.String("only", "", "run only shapes whose name contains this, in any case (smollm2: the real model's rows)")
	flag.Parse()
	if *child >= 0 {
		s := shapes[*child]
		path, _, err := modelFile(s, *cache)
		var ws []lora.Window
		if err == nil {
			ws, err = windows(path, s.Ctx)
		}
		var sec []float64
		if err == nil {
			sec, err = finetuneSteps(path, ws, s, *steps, *threads)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(sec)
		return
	}
	py, pyErr := pyref.Python()
	script, err := pyref.Script("peer.py")
	if pyErr == nil {
		pyErr = err
	}
	if pyErr != nil {
		fmt.Fprintf(os.Stderr, "benchpeer: the PEFT side cannot run (%v); %s\n", pyErr, pyref.InstallHint)
	}
	// The model files first, so that no measurement includes writing one;
	// the rows of a shared model that is not there are skipped, said once.
	var run []int
	paths := map[int]string{}
	skipped := map[string][]string{}
	var missing []string
	for i, s := range shapes {
		if *only != "" && !strings.Contains(strings.ToLower(s.Name), strings.ToLower(*only)) {
			continue
		}
		t := time.Now()
		path, wrote, err := modelFile(s, *cache)
		if err != nil {
			if s.Model == "" {
				fatal(err)
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
		run, paths[i] = append(run, i), path
	}
	for _, e := range missing {
		fmt.Printf("skipped %s: %s\n", strings.Join(skipped[e], ", "), e)
	}
	if len(run) == 0 {
		return
	}
	exe, _ := os.Executable()
	fmt.Printf("LoRA on q,k,v,o,gate,up,down (r8 alpha 16 unless the shape says r16: alpha 32); AdamW; fp32 unless said; %d threads each;\n", *threads)
	fmt.Printf("tokens/s of the median of %d steps after %d warm-up steps\n\n", *steps, warmupSteps)
	fmt.Printf("%-24s %14s %14s %8s %14s %14s\n", "shape", "finetune tok/s", "PEFT tok/s", "ratio", "finetune RSS", "PEFT RSS")
	for _, i := range run {
		s, path := shapes[i], paths[i]
		var ftSec []float64
		ftRSS, err := runChild(exec.Command(exe, "-shape", fmt.Sprint(i), "-steps", fmt.Sprint(*steps), "-threads", fmt.Sprint(*threads), "-cache", *cache), func(out []byte) error {
			return json.Unmarshal(out, &ftSec)
		})
		ft := "failed"
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: finetune: %v\n", s.Name, err)
		} else {
			ft = fmt.Sprintf("%.0f", float64(s.Ctx)/median(ftSec))
		}
		peer := func(autocast string) (pe, ratio, peRSS string) {
			pe, ratio, peRSS = "-", "-", "-"
			if pyErr != nil {
				return
			}
			sec, rss, err := peftSteps(py, script, path, s, autocast, *steps, *threads)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: PEFT %s: %v\n", s.Name, autocast, err)
				return "failed", ratio, peRSS
			}
			pe, peRSS = fmt.Sprintf("%.0f", float64(s.Ctx)/median(sec)), mib(rss)
			if ftSec != nil {
				ratio = fmt.Sprintf("%.2fx", median(sec)/median(ftSec))
			}
			return pe, ratio, peRSS
		}
		pe, ratio, peRSS := peer("")
		fmt.Printf("%-24s %14s %14s %8s %14s %14s\n", s.Name, ft, pe, ratio, mib(ftRSS), peRSS)
		if s.BF16 {
			pe, ratio, peRSS := peer("bf16")
			fmt.Printf("%-24s %14s %14s %8s %14s %14s\n", "  PEFT bf16 autocast", "", pe, ratio, "", peRSS)
		}
	}
	fmt.Println("\nratio: finetune's tokens/s over PEFT's. Peak RSS is each side's whole process (PEFT's includes torch and transformers).")
	fmt.Println("PEFT bf16 autocast: the forward pass under torch.autocast(\"cpu\", bfloat16), weights and LoRA kept in fp32.")
}

// modelFile is the file shape s trains on, written first when it is a
// test model or an F32 copy not written yet (wrote says so).
func modelFile(s shape, cache string) (path string, wrote bool, err error) {
	c := s.Cfg
	return benchmodel.File(s.Model, s.F32, c, cache, fmt.Sprintf("L%d-E%d-H%d-%d-FF%d-V%d-C%d-%s.gguf", c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.VocabSize, c.Context, c.Type))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchpeer:", err)
	os.Exit(1)
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// windows are the training windows of ctx tokens on the model at path:
// random tokens of its vocabulary, every one a target, one example per
// window.
func windows(path string, ctx int) ([]lora.Window, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ws := make([]lora.Window, windowsPerShape)
	for i := range ws {
		w := lora.Window{Tokens: make([]int32, ctx), Weights: make([]float32, ctx), Pos: make([]int32, ctx), Seq: make([]int32, ctx)}
		for j := range w.Tokens {
			w.Tokens[j] = int32(3 + rng.IntN(h.VocabSize-3))
			w.Weights[j], w.Pos[j] = 1, int32(j)
		}
		w.Tokens[0], w.Weights[0] = 1, 0
		ws[i] = w
	}
	return ws, nil
}

// runChild runs cmd, hands its stdout to parse and returns its peak RSS.
func runChild(cmd *exec.Cmd, parse func([]byte) error) (int64, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return rss, parse(out.Bytes())
}

// finetuneSteps trains warm-up plus steps optimizer steps and returns the
// seconds of each measured step.
func finetuneSteps(model string, ws []lora.Window, s shape, steps, threads int) ([]float64, error) {
	out, err := os.MkdirTemp("", "benchpeer-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	var sec []float64
	rank, alpha := s.lora()
	cfg := lora.Config{Rank: rank, Alpha: float64(alpha), Schedule: "constant", MaxSteps: warmupSteps + steps, Threads: threads, FixedThreads: true, Seed: 1,
		Files: lora.Files{Checkpoint: filepath.Join(out, "checkpoint.gguf"), Metrics: filepath.Join(out, "metrics.jsonl"), Adapter: filepath.Join(out, "adapter.gguf")}}
	_, err = lora.Train(context.Background(), model, cfg, lora.Data{Train: ws}, func(m lora.Metrics) {
		if m.Step > warmupSteps {
			sec = append(sec, float64(len(ws[0].Tokens))/m.TokensPerSec)
		}
	})
	return sec, err
}

// peftSteps runs the same training with PEFT in a child python (with
// autocast "bf16": the forward pass under bf16 autocast) and returns the
// seconds of each measured step and the child's peak RSS.
func peftSteps(py, script, model string, s shape, autocast string, steps, threads int) ([]float64, int64, error) {
	dir, err := os.MkdirTemp("", "benchpeer-peft-*")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	ws, err := windows(model, s.Ctx)
	if err != nil {
		return nil, 0, err
	}
	jw := make([]map[string]any, len(ws))
	for k, w := range ws {
		jw[k] = map[string]any{"tokens": w.Tokens, "weights": w.Weights, "pos": w.Pos, "seq": w.Seq}
	}
	losses := filepath.Join(dir, "losses.json")
	rank, alpha := s.lora()
	job := []map[string]any{{"op": "train", "gguf": model, "autocast": autocast,
		"targets": []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		"r":       rank, "alpha": alpha, "lr": 2e-4, "weight_decay": 0.0, "betas": []float64{0.9, 0.999}, "eps": 1e-8, "clip": 1.0,
		"steps": warmupSteps + steps, "schedule": "constant", "windows": jw, "grad_accum": 1, "seed": 1, "losses_out": losses}}
	b, err := json.Marshal(job)
	if err != nil {
		return nil, 0, err
	}
	jobs := filepath.Join(dir, "jobs.json")
	if err := os.WriteFile(jobs, b, 0o644); err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(py, script, jobs)
	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES=", "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error", "PYTHONWARNINGS=ignore",
		fmt.Sprintf("FINETUNE_PYREF_THREADS=%d", threads), fmt.Sprintf("OMP_NUM_THREADS=%d", threads))
	rss, err := runChild(cmd, func([]byte) error { return nil })
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Sec []float64 `json:"step_seconds"`
	}
	b, err = os.ReadFile(losses)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return nil, 0, err
	}
	if len(r.Sec) != warmupSteps+steps {
		return nil, 0, fmt.Errorf("%d step times, want %d", len(r.Sec), warmupSteps+steps)
	}
	return r.Sec[warmupSteps:], rss, nil
}
