package lora

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

// qa are question/answer pairs nothing like TinyStories.
var qa = [][2]string{
	{"What is the capital of Peru?", "Lima."},
	{"What is 7 times 8?", "56."},
	{"Which gas do plants absorb?", "Carbon dioxide."},
	{"Who wrote Hamlet?", "Shakespeare."},
	{"What is the boiling point of water in Celsius?", "100 degrees."},
	{"What is the largest planet?", "Jupiter."},
	{"What is the chemical symbol for gold?", "Au."},
	{"How many legs does a spider have?", "Eight."},
	{"What is the square root of 81?", "Nine."},
	{"Which ocean is the largest?", "The Pacific."},
	{"What language is spoken in Brazil?", "Portuguese."},
	{"What is the freezing point of water in Fahrenheit?", "32 degrees."},
	{"Who painted the Mona Lisa?", "Leonardo da Vinci."},
	{"What is the smallest prime number?", "Two."},
	{"What is the capital of Japan?", "Tokyo."},
	{"How many continents are there?", "Seven."},
	{"What is the hardest natural mineral?", "Diamond."},
	{"Which planet is known as the red planet?", "Mars."},
	{"What is the currency of the United Kingdom?", "The pound sterling."},
	{"How many minutes are in an hour?", "Sixty."},
}

type example struct {
	tokens  []int32
	weights []float32
	prompt  []int32
	answer  string
}

// qaExamples tokenizes the pairs as "Q: ...\nA: answer\n", training only
// on the answer and its newline. The newline, not </s>, ends an answer:
// stories260K never saw </s> in training and its output head gives </s> the
// same logit as several byte tokens ("$", 0xFC, ...), a tie no LoRA on the
// seven projections can break.
func qaExamples(t *testing.T, model string) []example {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out []example
	for _, p := range qa {
		prompt := "Q: " + p[0] + "\nA:"
		pt, _ := m.Tokenize(prompt, true, false)
		full, _ := m.Tokenize(prompt+" "+p[1]+"\n", true, false)
		for i := range pt {
			if full[i] != pt[i] {
				t.Fatalf("%q does not tokenize as a prefix of %q", prompt, prompt+" "+p[1])
			}
		}
		w := make([]float32, len(full))
		for i := len(pt); i < len(full); i++ {
			w[i] = 1
		}
		out = append(out, example{tokens: full, weights: w, prompt: pt, answer: p[1]})
	}
	return out
}

// pack fills windows of ctxLen tokens with whole examples.
func pack(examples []example, ctxLen int) []Window {
	var ws []Window
	var cur *Window
	used, seq := 0, int32(0)
	flush := func() {
		if cur == nil {
			return
		}
		for i := used; i < ctxLen; i++ {
			cur.Seq[i] = -1
		}
		ws = append(ws, *cur)
		cur = nil
	}
	for _, ex := range examples {
		if cur == nil || used+len(ex.tokens) > ctxLen {
			flush()
			cur = &Window{Tokens: make([]int32, ctxLen), Weights: make([]float32, ctxLen), Pos: make([]int32, ctxLen), Seq: make([]int32, ctxLen)}
			used, seq = 0, 0
		}
		for i, tok := range ex.tokens {
			cur.Tokens[used+i] = tok
			cur.Weights[used+i] = ex.weights[i]
			cur.Pos[used+i] = int32(i)
			cur.Seq[used+i] = seq
		}
		used += len(ex.tokens)
		seq++
	}
	flush()
	return ws
}

// TestPackedLossEqualsSeparateLosses: examples packed into one window do
// not see each other, so the packed loss (mean over all targets) equals the
// target-weighted mean of each example's loss in a window of its own, and
// so do the gradients.
func TestPackedLossEqualsSeparateLosses(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	exs := qaExamples(t, model)[:4]
	packed := pack(exs, 128)
	if len(packed) != 1 {
		t.Fatalf("4 examples packed into %d windows", len(packed))
	}
	_, e := openEngine(t, model, Targets, 4, 128)
	e.allRows = true // the graph as run below
	p := initParams(e, 4, 8, 2, 1)
	for i := range p.Pairs {
		for j := range p.Pairs[i].B {
			p.Pairs[i].B[j] = float32(math.Sin(float64(i*7+j))) * 0.05
		}
	}
	e.setParams(p)
	gr, err := e.use(graphTrain)
	if err != nil {
		t.Fatal(err)
	}
	run := func(w *Window, seed float32) (loss float64, targets int, grad []float32) {
		var in inputs
		e.prepare(w, &in, true)
		if err := e.run(gr, &in, seed*float32(e.ctxLen)/float32(in.targets), 0); err != nil {
			t.Fatal(err)
		}
		return e.windowLoss(gr, &in), in.targets, gr.gradB[3].GetF32(nil)
	}
	packedLoss, n, packedGrad := run(&packed[0], 1)
	sum, total := 0.0, 0
	sepGrad := make([]float32, len(packedGrad))
	for _, ex := range exs {
		w := pack([]example{ex}, 128)[0]
		l, k, g := run(&w, float32(w.Targets())/float32(n))
		sum += l * float64(k)
		total += k
		addTo(sepGrad, g)
	}
	if total != n {
		t.Fatalf("%d targets packed, %d separately", n, total)
	}
	// The graph's loss sums float32 rows that include log(V) per non-target
	// row, so equality holds to float32 rounding of that sum.
	if d := math.Abs(packedLoss - sum/float64(total)); d > 1e-4 {
		t.Fatalf("packed loss %.7f, separate %.7f (diff %.2g)", packedLoss, sum/float64(total), d)
	}
	worst := 0.0
	for i := range sepGrad {
		worst = math.Max(worst, math.Abs(float64(sepGrad[i]-packedGrad[i])))
	}
	if worst > 1e-6 {
		t.Fatalf("packed and separate gradients differ by %g", worst)
	}
	t.Logf("packed loss %.6f over %d targets = separate losses; gradient max diff %.1e", packedLoss, n, worst)
}

// TestLearnsAnswers fine-tunes stories260K on 20 question/answer pairs and
// checks, through llama.cpp with the saved adapter, that greedy generation
// reproduces the answers (the line after "A:"), which the base model does
// not.
func TestLearnsAnswers(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	exs := qaExamples(t, model)
	windows := pack(exs, 128)
	dir := t.TempDir()
	var losses []float64
	res, err := Train(context.Background(), model, Config{
		Rank: 16, Alpha: 32, LearningRate: 1e-2, Schedule: "cosine", WarmupSteps: 10,
		MaxSteps: 240, Seed: 1, Threads: 1, Files: filesIn(dir),
	}, Data{Train: windows}, func(m Metrics) { losses = append(losses, m.Loss) })
	if err != nil {
		t.Fatal(err)
	}
	first, last := mean(losses[:len(windows)]), mean(losses[len(losses)-len(windows):])
	t.Logf("loss %.3f -> %.3f over %d steps (%.0f%% lower)", first, last, res.Steps, 100*(1-last/first))
	if last > 0.1*first {
		t.Errorf("training loss fell from %.3f to %.3f, less than 90%%", first, last)
	}
	tuned, base := 0, 0
	for i, ex := range exs {
		got := answer(t, model, res.Adapter, ex.prompt)
		if got == ex.answer {
			tuned++
		} else if i < 5 {
			t.Logf("tuned answer %q, want %q", got, ex.answer)
		}
		if answer(t, model, "", ex.prompt) == ex.answer {
			base++
		}
	}
	t.Logf("answers reproduced: tuned %d/20, base %d/20", tuned, base)
	if tuned < 18 || base > 0 {
		t.Fatalf("tuned model reproduces %d/20 answers (want >= 18), base %d (want 0)", tuned, base)
	}
	var meta map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "adapter.json"))
	if err != nil || json.Unmarshal(b, &meta) != nil {
		t.Fatalf("adapter.json: %v", err)
	}
	if bm := meta["base_model"].(map[string]any); bm["sha256"] != "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d" {
		t.Fatalf("adapter.json base sha256 = %v", bm["sha256"])
	}
}

// TestLearnsToStop trains stories260K on the 20 question/answer pairs with
// answers that end in </s>, a token the base never produces (its head row
// ties with unused byte tokens): with the output head among the targets,
// greedy generation through llama.cpp with the saved adapter reproduces the
// answers and stops at </s>; with the seven projections alone it does not
// stop.
func TestLearnsToStop(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	exs := qaExamples(t, model)
	for i := range exs {
		ex := &exs[i]
		full, _ := m.Tokenize("Q: "+qa[i][0]+"\nA: "+qa[i][1], true, false)
		ex.tokens = append(full, m.EOS())
		ex.weights = ex.weights[:0]
		for j := range ex.tokens {
			ex.weights = append(ex.weights, float32(btoi(j >= len(ex.prompt))))
		}
	}
	windows := pack(exs, 128)
	for _, c := range []struct {
		name    string
		targets []string
		stops   bool
	}{{"with output", append(slices.Clone(Targets), TargetOutput), true}, {"projections only", Targets, false}} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Train(context.Background(), model, Config{
				Targets: c.targets, Rank: 16, Alpha: 32, LearningRate: 1e-2, Schedule: "cosine", WarmupSteps: 10,
				MaxSteps: 240, Seed: 1, Threads: 1, Files: filesIn(t.TempDir()),
			}, Data{Train: windows}, nil)
			if err != nil {
				t.Fatal(err)
			}
			right, stopped := 0, 0
			for i, ex := range exs {
				got, st := generate(t, model, res.Adapter, ex.prompt, 24)
				if st.Stop == llama.StopEndOfGeneration {
					stopped++
				}
				if strings.TrimSpace(got) == ex.answer && st.Stop == llama.StopEndOfGeneration {
					right++
				} else if i < 3 {
					t.Logf("answer %q (%s), want %q then </s>", got, st.Stop, ex.answer)
				}
			}
			t.Logf("%s: %d/20 answers exact and stopped at </s>; %d/20 stopped", c.name, right, stopped)
			switch {
			case c.stops && right < 18:
				t.Fatalf("with output among the targets, %d/20 answers end at </s> as trained (want >= 18)", right)
			case !c.stops && stopped > 0:
				t.Fatalf("without output, %d/20 answers stopped at </s>: the test's premise (an unlearnable </s>) no longer holds", stopped)
			}
		})
	}
}

// generate decodes greedily through llama.cpp (with adapter, if given) up
// to maxTokens tokens and returns the text and how it stopped.
func generate(t *testing.T, model, adapter string, prompt []int32, maxTokens int) (string, llama.Stats) {
	t.Helper()
	m, err := llama.LoadModel(model, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := llama.NewContext(m, llama.ContextOptions{Context: max(128, len(prompt)+maxTokens), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if adapter != "" {
		a, err := llama.LoadAdapter(m, adapter)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if err := ctx.SetAdapter(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	st, err := llama.Generate(context.Background(), ctx, prompt, llama.GenerateOptions{MaxTokens: maxTokens}, func(s string) { b.WriteString(s) })
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), st
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// answer generates greedily through llama.cpp (with adapter, if given)
// and returns the first line.
func answer(t *testing.T, model, adapter string, prompt []int32) string {
	t.Helper()
	text, _ := generate(t, model, adapter, prompt, 24)
	first, _, _ := strings.Cut(text, "\n")
	return strings.TrimSpace(first)
}

// resumeConfig is the run the resume tests interrupt.
func resumeConfig(dir string) Config {
	return Config{Rank: 4, Alpha: 8, LearningRate: 5e-3, MaxSteps: 12, GradAccum: 2, CheckpointEvery: 4, EvalEvery: 3, Seed: 3, Threads: 1, Files: filesIn(dir)}
}

func resumeData(t *testing.T, model string) Data {
	exs := qaExamples(t, model)
	return Data{Train: pack(exs[:16], 64), Val: pack(exs[16:], 64)}
}

// TestMain doubles as the child process of TestResumeAfterKill and of
// TestEstimateMemoryHolds.
func TestMain(m *testing.M) {
	if os.Getenv(memChildEnv) != "" {
		memChild()
	}
	if dir := os.Getenv("FINETUNE_LORA_CHILD"); dir != "" {
		model := os.Getenv("FINETUNE_LORA_MODEL")
		t := &testing.T{}
		cfg := resumeConfig(dir)
		_, err := Train(context.Background(), model, cfg, resumeData(t, model), func(m Metrics) {
			time.Sleep(150 * time.Millisecond) // leave the parent time to kill mid-run
		})
		if err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type curve []Metrics

func readCurve(t *testing.T, dir string) curve {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c curve
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m Metrics
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("metrics.jsonl: %v", err)
		}
		c = append(c, m)
	}
	return c
}

func compareRuns(t *testing.T, want, got string) {
	t.Helper()
	a, err := adapters.Read(filepath.Join(want, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := adapters.Read(filepath.Join(got, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range a.Pairs {
		for j := range a.Pairs[i].A {
			worst = math.Max(worst, math.Abs(float64(a.Pairs[i].A[j]-b.Pairs[i].A[j])))
		}
		for j := range a.Pairs[i].B {
			worst = math.Max(worst, math.Abs(float64(a.Pairs[i].B[j]-b.Pairs[i].B[j])))
		}
	}
	if worst > 1e-6 {
		t.Fatalf("resumed adapter differs from the uninterrupted one by %g", worst)
	}
	ca, cb := readCurve(t, want), readCurve(t, got)
	if len(ca) != len(cb) {
		t.Fatalf("loss curves have %d and %d steps", len(ca), len(cb))
	}
	for i := range ca {
		x, y := ca[i], cb[i]
		if x.Step != y.Step || x.Loss != y.Loss || x.LR != y.LR || x.GradNorm != y.GradNorm || (x.ValLoss == nil) != (y.ValLoss == nil) || (x.ValLoss != nil && *x.ValLoss != *y.ValLoss) {
			t.Fatalf("step %d differs: uninterrupted %+v, resumed %+v", x.Step, x, y)
		}
	}
	t.Logf("adapter max abs diff %g; %d steps of loss curve identical", worst, len(ca))
}

func TestResumeAfterInterrupt(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	data := resumeData(t, model)
	full, cut := t.TempDir(), t.TempDir()
	if _, err := Train(context.Background(), model, resumeConfig(full), data, nil); err != nil {
		t.Fatal(err)
	}
	// Interrupt after step 6 (Ctrl-C): a checkpoint is written at the stop.
	ctx, cancel := context.WithCancel(context.Background())
	res, err := Train(ctx, model, resumeConfig(cut), data, func(m Metrics) {
		if m.Step == 6 {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Steps != 6 {
		t.Fatalf("interrupted run: %+v", res)
	}
	cfg := resumeConfig(cut)
	cfg.Resume = true
	done, err := Train(context.Background(), model, cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	compareRuns(t, full, cut)

	// Resuming a run with no step left keeps its figures (the last loss
	// comes from the checkpoint, not from a step that did not run).
	again, err := Train(context.Background(), model, cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Steps != done.Steps || again.TrainLoss != done.TrainLoss || again.TrainLoss == 0 {
		t.Fatalf("resumed a finished run: %d steps, train loss %g; the run had %d, %g", again.Steps, again.TrainLoss, done.Steps, done.TrainLoss)
	}
}

func TestResumeAfterKill(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	data := resumeData(t, model)
	full, killed := t.TempDir(), t.TempDir()
	if _, err := Train(context.Background(), model, resumeConfig(full), data, nil); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "FINETUNE_LORA_CHILD="+killed, "FINETUNE_LORA_MODEL="+model)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c := tryCurve(filepath.Join(killed, "metrics.jsonl")); c >= 6 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child never reached step 6")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if c := tryCurve(filepath.Join(killed, "metrics.jsonl")); c >= 12 {
		t.Fatalf("the child finished (%d steps) before it was killed", c)
	}
	cfg := resumeConfig(killed)
	cfg.Resume = true
	if _, err := Train(context.Background(), model, cfg, data, nil); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, full, killed)
}

func tryCurve(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// filesIn names a run's products in dir as a run folder names them.
func filesIn(dir string) Files {
	return Files{Checkpoint: filepath.Join(dir, "checkpoint.gguf"), Metrics: filepath.Join(dir, "metrics.jsonl"), Adapter: filepath.Join(dir, "adapter.gguf")}
}
