package lora

import (
	"context"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/ggmltest"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestTrainOnSecondBackend trains through a second, dynamically loaded
// ggml backend (BLAS over OpenBLAS, built like the CUDA one): the scheduler
// splits every graph between it and the CPU, and the losses and the adapter
// equal the CPU-only run's within float tolerance, on the whole-window and
// the checkpointed paths, all nine targets.
//
// It runs in a child process: a loaded backend stays registered for the
// rest of the process, and llama.cpp would then use BLAS for the other
// tests' reference logits.
func TestTrainOnSecondBackend(t *testing.T) {
	lib := ggmltest.BLAS(t)
	if os.Getenv("FINETUNE_BLAS_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestTrainOnSecondBackend$", "-test.v")
		cmd.Env = append(os.Environ(), "FINETUNE_BLAS_CHILD=1")
		out, err := cmd.CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "device_test.go") {
				t.Log(strings.TrimSpace(line))
			}
		}
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTrainOnSecondBackend") {
			t.Fatalf("the child process: %v\n%s", err, out)
		}
		return
	}
	ggml.LoadBackends([]string{filepath.Dir(lib)})
	model := shared.Path(t, "models/stories260K.gguf")
	data := resumeData(t, model)
	for _, ckpt := range []string{"off", "on"} {
		t.Run("checkpointing "+ckpt, func(t *testing.T) {
			run := func(device string) (*adapters.LoRA, []float64) {
				dir := t.TempDir()
				var losses []float64
				var log strings.Builder
				res, err := Train(context.Background(), model, Config{
					Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
					Device: device, Targets: append(slices.Clone(Targets), ModelTargets...), Checkpointing: ckpt,
					Rank: 4, Alpha: 8, LearningRate: 5e-3, MaxSteps: 6, Seed: 3, Threads: 1, Files: filesIn(dir),
					Precision: "f32", // the devices' own arithmetic against the CPU's F32
				}, data, func(m Metrics) { losses = append(losses, m.Loss) })
				if err != nil {
					t.Fatal(err)
				}
				if device == "BLAS" && !strings.Contains(log.String(), "device=BLAS") {
					t.Fatalf("no graph placed on BLAS; the log:\n%s", log.String())
				}
				if device == "BLAS" {
					for _, line := range strings.Split(log.String(), "\n") {
						if strings.Contains(line, "device=BLAS") {
							t.Log(line)
						}
					}
				}
				l, err := adapters.Read(res.Adapter)
				if err != nil {
					t.Fatal(err)
				}
				return l, losses
			}
			cpu, cpuLoss := run("cpu")
			blas, blasLoss := run("BLAS")
			for i := range cpuLoss {
				if d := math.Abs(cpuLoss[i] - blasLoss[i]); d > 1e-4*math.Abs(cpuLoss[i]) {
					t.Fatalf("step %d: loss %.6f on the CPU, %.6f through BLAS", i+1, cpuLoss[i], blasLoss[i])
				}
			}
			worst := 0.0
			for i := range cpu.Pairs {
				for j := range cpu.Pairs[i].B {
					worst = math.Max(worst, math.Abs(float64(cpu.Pairs[i].B[j]-blas.Pairs[i].B[j])))
				}
			}
			if worst > 1e-4 {
				t.Fatalf("adapters differ by up to %g between the CPU and BLAS", worst)
			}
			t.Logf("6 steps: losses within 1e-4 relative, lora_b within %.1e", worst)
		})
	}
}

// TestOpenDevice: the device asked for is there, or a one-line error says
// which there are.
func TestOpenDevice(t *testing.T) {
	for _, spec := range []string{"", "auto", "cpu", "CPU"} {
		b, err := OpenDevice(spec)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		if b != nil && (spec == "cpu" || spec == "CPU" || !b.IsCPU() && b.Device().Type != ggml.DeviceGPU) {
			t.Fatalf("%q: device %s", spec, b.Name())
		}
		b.Close()
	}
	for _, spec := range []string{"cuda:7", "rocm", "tpu0", "cuda:x"} {
		_, err := OpenDevice(spec)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), spec) {
			t.Fatalf("%q: error %v, want one line naming it", spec, err)
		}
	}
}
