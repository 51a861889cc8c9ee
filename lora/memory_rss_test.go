package lora

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// memRun is one training run whose peak RSS a child process measures.
type memRun struct {
	Model         string
	Ctx           int
	Targets       []string
	Checkpointing string // "on" or "off"
	Precision     string
	Dir           string
}

// memChildEnv names the run a child of TestEstimateMemoryHolds trains.
const memChildEnv = "FINETUNE_LORA_MEMCHILD"

// memChild trains one step and one validation pass of the run in the
// environment (windows whose every token is a target, the most memory a
// window takes) and prints the estimate for the path it took.
func memChild() {
	var r memRun
	if err := json.Unmarshal([]byte(os.Getenv(memChildEnv)), &r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f, err := gguf.Open(r.Model)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h, err := modelinfo.ParseHyper(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ws []Window
	for i := 0; i < 2; i++ {
		w := Window{Tokens: make([]int32, r.Ctx), Weights: make([]float32, r.Ctx), Pos: make([]int32, r.Ctx), Seq: make([]int32, r.Ctx)}
		for j := range w.Tokens {
			w.Tokens[j] = int32(3 + rng.IntN(h.VocabSize-3))
			w.Pos[j] = int32(j)
			w.Weights[j] = 1 // every token a target: the window the estimate is for
		}
		ws = append(ws, w)
	}
	mem, err := EstimateMemory(r.Model, r.Ctx, MemoryOptions{Rank: 16, Targets: r.Targets, Dropout: 0.05, Precision: r.Precision})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg := Config{Rank: 16, Alpha: 32, Dropout: 0.05, MaxSteps: 1, EvalEvery: 1, Threads: 2, Checkpointing: r.Checkpointing, Precision: r.Precision, Targets: r.Targets, Seed: 1,
		Files: filesIn(r.Dir)}
	if _, err := Train(context.Background(), r.Model, cfg, Data{Train: ws[:1], Val: ws[1:]}, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	est := mem.WholeWindow
	if r.Checkpointing == "on" {
		est = mem.Checkpointed
	}
	fmt.Println(est)
	os.Exit(0)
}

// measureRun trains r in a child process and returns its estimate and
// its peak RSS.
func measureRun(t *testing.T, r memRun) (est, peak int64) {
	t.Helper()
	r.Dir = t.TempDir()
	b, _ := json.Marshal(r)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), memChildEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	if _, err := fmt.Sscan(string(out), &est); err != nil {
		t.Fatalf("%+v: the child printed %q", r, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return est, ru.Maxrss * 1024
}

// TestEstimateMemoryHolds trains one step and one validation pass in a
// child process, on both paths, with the seven projections and with the
// head and the embedding too, on SmolLM2 (a tied head, Q4_1 layers) and on
// a random model of the same layers with its own head: the estimate must
// be within 1.25x of the child's peak RSS either way.
func TestEstimateMemoryHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("trains in child processes; not with -short")
	}
	smol := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	untied := filepath.Join(t.TempDir(), "untied.gguf")
	if err := testmodel.Write(untied, testmodel.Config{Layers: 8, Embd: 576, Heads: 9, KVHeads: 3, FF: 1536, VocabSize: 49152, Context: 1024, Type: "q8_0"}); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(Targets), ModelTargets...)
	for _, model := range []string{smol, untied} {
		for _, targets := range [][]string{Targets, all} {
			for _, ckpt := range []string{"off", "on"} {
				r := memRun{Model: model, Ctx: 512, Targets: targets, Checkpointing: ckpt}
				est, peak := measureRun(t, r)
				ratio := float64(est) / float64(peak)
				t.Logf("%s, %d targets, checkpointing %s: estimate %.0f MiB, peak RSS %.0f MiB (%.2fx)", filepath.Base(model), len(targets), ckpt, float64(est)/(1<<20), float64(peak)/(1<<20), ratio)
				if ratio > 1.25 || ratio < 1/1.25 {
					t.Errorf("%s, targets %v, checkpointing %s: estimate %.0f MiB against a peak RSS of %.0f MiB (%.2fx)", filepath.Base(model), targets, ckpt, float64(est)/(1<<20), float64(peak)/(1<<20), ratio)
				}
			}
		}
	}
}
