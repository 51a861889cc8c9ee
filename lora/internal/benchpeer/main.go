// Command benchpeer puts finetune's LoRA training beside the tool a user
// would otherwise pick, Hugging Face PEFT + transformers in PyTorch on the
// CPU (fp32, torch's AdamW), on the same work: the same test-model shapes
// (58M and 135M), windows of the same random tokens at ctx 256 and 512,
// LoRA r8 on all seven projections, the same threads. It prints tokens/s
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

	"github.com/finetune-dev/finetune/internal/pyref"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
)

type shape struct {
	Name string
	Cfg  testmodel.Config
	Ctx  int
}

// The shapes of lora/internal/benchtrain: a 58M Llama and SmolLM2-135M's.
var (
	m58    = testmodel.Config{Layers: 8, Embd: 512, Heads: 8, KVHeads: 8, FF: 1376, VocabSize: 32000, Context: 2048, Type: "f32"}
	m135   = testmodel.Config{Layers: 30, Embd: 576, Heads: 9, KVHeads: 3, FF: 1536, VocabSize: 49152, Context: 2048, Type: "f32"}
	shapes = []shape{
		{"58M F32 ctx 256", m58, 256},
		{"58M F32 ctx 512", m58, 512},
		{"135M F32 ctx 256", m135, 256},
		{"135M F32 ctx 512", m135, 512},
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
	cache := flag.String("cache", filepath.Join(os.TempDir(), "finetune-bench"), "folder for the generated test models")
	only := flag.String("only", "", "run only shapes whose name contains this")
	flag.Parse()
	if *child >= 0 {
		s := shapes[*child]
		sec, err := finetuneSteps(modelPath(*cache, s.Cfg), windows(s), *steps, *threads)
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
	exe, _ := os.Executable()
	fmt.Printf("LoRA r8 on q,k,v,o,gate,up,down; AdamW; fp32; %d threads each; tokens/s of the median of %d steps after %d warm-up steps\n\n", *threads, *steps, warmupSteps)
	fmt.Printf("%-18s %14s %14s %8s %14s %14s\n", "shape", "finetune tok/s", "PEFT tok/s", "ratio", "finetune RSS", "PEFT RSS")
	for i, s := range shapes {
		if *only != "" && !strings.Contains(s.Name, *only) {
			continue
		}
		path := modelPath(*cache, s.Cfg)
		if _, err := os.Stat(path); err != nil {
			if err := os.MkdirAll(*cache, 0o755); err != nil {
				fatal(err)
			}
			if err := testmodel.Write(path, s.Cfg); err != nil {
				fatal(err)
			}
		}
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
		pe, ratio, peRSS := "-", "-", "-"
		if pyErr == nil {
			sec, rss, err := peftSteps(py, script, path, s, *steps, *threads)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: PEFT: %v\n", s.Name, err)
				pe = "failed"
			} else {
				pe, peRSS = fmt.Sprintf("%.0f", float64(s.Ctx)/median(sec)), mib(rss)
				if ftSec != nil {
					ratio = fmt.Sprintf("%.2fx", median(sec)/median(ftSec))
				}
			}
		}
		fmt.Printf("%-18s %14s %14s %8s %14s %14s\n", s.Name, ft, pe, ratio, mib(ftRSS), peRSS)
	}
	fmt.Println("\nratio: finetune's tokens/s over PEFT's. Peak RSS is each side's whole process (PEFT's includes torch and transformers).")
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

func modelPath(cache string, c testmodel.Config) string {
	return filepath.Join(cache, fmt.Sprintf("L%d-E%d-H%d-%d-FF%d-V%d-C%d-%s.gguf", c.Layers, c.Embd, c.Heads, c.KVHeads, c.FF, c.VocabSize, c.Context, c.Type))
}

// windows are the shape's training windows: random tokens, every one a
// target, one example per window.
func windows(s shape) []lora.Window {
	rng := rand.New(rand.NewPCG(7, 7))
	ws := make([]lora.Window, windowsPerShape)
	for i := range ws {
		w := lora.Window{Tokens: make([]int32, s.Ctx), Weights: make([]float32, s.Ctx), Pos: make([]int32, s.Ctx), Seq: make([]int32, s.Ctx)}
		for j := range w.Tokens {
			w.Tokens[j] = int32(3 + rng.IntN(s.Cfg.VocabSize-3))
			w.Weights[j], w.Pos[j] = 1, int32(j)
		}
		w.Tokens[0], w.Weights[0] = 1, 0
		ws[i] = w
	}
	return ws
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
func finetuneSteps(model string, ws []lora.Window, steps, threads int) ([]float64, error) {
	out, err := os.MkdirTemp("", "benchpeer-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	var sec []float64
	cfg := lora.Config{Rank: 8, Alpha: 16, Schedule: "constant", MaxSteps: warmupSteps + steps, Threads: threads, FixedThreads: true, Seed: 1,
		Files: lora.Files{Checkpoint: filepath.Join(out, "checkpoint.gguf"), Metrics: filepath.Join(out, "metrics.jsonl"), Adapter: filepath.Join(out, "adapter.gguf")}}
	_, err = lora.Train(context.Background(), model, cfg, lora.Data{Train: ws}, func(m lora.Metrics) {
		if m.Step > warmupSteps {
			sec = append(sec, float64(len(ws[0].Tokens))/m.TokensPerSec)
		}
	})
	return sec, err
}

// peftSteps runs the same training with PEFT in a child python and returns
// the seconds of each measured step and the child's peak RSS.
func peftSteps(py, script, model string, s shape, steps, threads int) ([]float64, int64, error) {
	dir, err := os.MkdirTemp("", "benchpeer-peft-*")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	ws := windows(s)
	jw := make([]map[string]any, len(ws))
	for k, w := range ws {
		jw[k] = map[string]any{"tokens": w.Tokens, "weights": w.Weights, "pos": w.Pos, "seq": w.Seq}
	}
	losses := filepath.Join(dir, "losses.json")
	job := []map[string]any{{"op": "train", "gguf": model,
		"targets": []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		"r":       8, "alpha": 16, "lr": 2e-4, "weight_decay": 0.0, "betas": []float64{0.9, 0.999}, "eps": 1e-8, "clip": 1.0,
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
