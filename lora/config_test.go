package lora

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

func TestSchedules(t *testing.T) {
	c := Config{LearningRate: 1, WarmupSteps: 4, Schedule: "cosine"}
	for step, want := range map[int]float64{1: 0.25, 4: 1, 5: 1, 7: 0.5 * (1 + math.Cos(math.Pi*2/6)), 10: 0.5 * (1 + math.Cos(math.Pi*5/6))} {
		if got := c.lr(step, 10); math.Abs(got-want) > 1e-12 {
			t.Errorf("cosine lr(%d) = %g, want %g", step, got, want)
		}
	}
	c.Schedule = "linear"
	if got := c.lr(7, 10); math.Abs(got-(1-2.0/6)) > 1e-12 {
		t.Errorf("linear lr(7) = %g", got)
	}
	if got := c.lr(10, 10); got <= 0 {
		t.Errorf("the last linear step has lr %g: it would not move", got)
	}
	c.Schedule = "constant"
	if c.lr(9, 10) != 1 || c.lr(2, 10) != 0.5 {
		t.Errorf("constant with warmup: %g %g", c.lr(9, 10), c.lr(2, 10))
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Targets: []string{"attn_qq"}}, `unknown target "attn_qq"`},
		{Config{Targets: []string{"attn_q", "attn_q"}}, "twice"},
		{Config{Rank: -1}, "rank"},
		{Config{Dropout: 1}, "dropout"},
		{Config{LearningRate: -1}, "learning rate"},
		{Config{Schedule: "step"}, "schedule"},
		{Config{Precision: "fp16"}, `precision "fp16": use auto, f32 or bf16`},
		{Config{}, "Files must name"},
	} {
		cfg := c.cfg
		cfg.Defaults()
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestRSLoRAScaleSurvivesExport(t *testing.T) {
	c := Config{Rank: 16, Alpha: 8, RSLoRA: true}
	p := &Params{Rank: 16, Alpha: 8, Scale: c.scale()}
	if math.Abs(float64(p.Scale)-2) > 1e-6 {
		t.Fatalf("rsLoRA scale = %g, want alpha/sqrt(r) = 2", p.Scale)
	}
	// llama.cpp applies alpha/r: the stored alpha must make that the scale.
	if a := p.Adapter(); math.Abs(float64(a.Alpha)/16-2) > 1e-6 {
		t.Fatalf("exported alpha %g gives llama.cpp scale %g", a.Alpha, a.Alpha/16)
	}
}

// storyWindows holds TinyStories-like text the base model predicts well.
func storyWindows(t *testing.T, model string) []Window {
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	toks, _ := m.Tokenize("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", true, false)
	w := make([]float32, len(toks))
	for i := 1; i < len(toks); i++ {
		w[i] = 1
	}
	return pack([]example{{tokens: toks, weights: w}}, 128)
}

// TestEarlyStoppingKeepsBest trains on question/answer pairs while
// validating on story text the base model knows: validation loss rises as
// the adapter overfits, so the run stops after its patience and writes the
// best adapter, not the last.
func TestEarlyStoppingKeepsBest(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	exs := qaExamples(t, model)
	dir := t.TempDir()
	var vals []float64
	res, err := Train(context.Background(), model, Config{Rank: 8, Alpha: 16, LearningRate: 2e-2, Schedule: "constant",
		MaxSteps: 60, EvalEvery: 2, Patience: 3, Seed: 2, Threads: 1, Files: filesIn(dir)},
		Data{Train: pack(exs, 128), Val: storyWindows(t, model)}, func(m Metrics) {
			if m.ValLoss != nil {
				vals = append(vals, *m.ValLoss)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("validation losses %v; best %.4f at step %d; stopped at %d", vals, *res.BestValLoss, res.BestStep, res.Steps)
	if !res.StoppedEarly || res.Steps >= 60 {
		t.Fatalf("did not stop early: %+v", res)
	}
	if res.Steps != res.BestStep+3*2 {
		t.Fatalf("stopped at step %d, want best step %d + patience 3 × 2", res.Steps, res.BestStep)
	}
	if res.ValLoss == nil || math.Abs(*res.ValLoss-*res.BestValLoss) > 1e-6 {
		t.Fatalf("the written adapter has validation loss %v, not the best %v", res.ValLoss, *res.BestValLoss)
	}
}

func TestDropoutIsSeededAndMatters(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	windows := pack(qaExamples(t, model), 128)
	run := func(dropout float64) float64 {
		var last float64
		_, err := Train(context.Background(), model, Config{Rank: 8, Alpha: 16, LearningRate: 1e-2, MaxSteps: 6, Dropout: dropout, Seed: 5, Threads: 1, Files: filesIn(t.TempDir())},
			Data{Train: windows}, func(m Metrics) { last = m.Loss })
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	a, b, none := run(0.3), run(0.3), run(0)
	if a != b {
		t.Fatalf("dropout with the same seed gave losses %v and %v", a, b)
	}
	if a == none {
		t.Fatalf("dropout 0.3 changed nothing (loss %v)", a)
	}
}
