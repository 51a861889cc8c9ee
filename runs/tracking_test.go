package runs

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/track/tracktest"
)

// smolRecipe is a short run of SmolLM2-135M-Instruct on the customer
// support recipe's data (steps training steps, validation every 3), with
// a 4-case eval of base and tuned; extra is appended to the recipe.
func smolRecipe(t *testing.T, steps int, extra string) *recipes.Recipe {
	t.Helper()
	p := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	t.Setenv("FINETUNE_SHARED", filepath.Dir(filepath.Dir(p)))
	data, err := filepath.Abs("../recipes/data/customer-support")
	if err != nil {
		t.Fatal(err)
	}
	body := "name: smol-track\nbase: catalog:smollm2-135m-instruct\n" +
		"data:\n  train: " + data + "/train.jsonl\n  eval: " + data + "/eval.jsonl\n  seq_len: 192\n" +
		"lora:\n  rank: 4\n" +
		"train:\n  max_steps: " + itoa(steps) + "\n  learning_rate: 4e-3\n  eval_every: 3\n  val_windows: 2\n  checkpoint_every: 50\n  threads: 2\n  seed: 7\n" +
		"eval:\n  max_cases: 4\n  contestants:\n    - name: base\n      kind: local\n    - name: tuned\n      kind: local\n      adapter: tuned\n" +
		"  metrics:\n    - name: label_accuracy\n      pattern: \"Intent: *([a-z_]+)\"\n    - name: rouge_l\n  generation:\n    max_tokens: 12\n    temperature: 0\n" + extra
	return recipe(t, t.TempDir(), body)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// readMetrics reads a run's metrics.jsonl.
func readMetrics(t *testing.T, run *Run) []lora.Metrics {
	t.Helper()
	f, err := os.Open(run.Path(MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []lora.Metrics
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m lora.Metrics
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

// TestTensorBoardOnSmolLM2: a SmolLM2 run and its eval leave event files
// in the run folder from which TensorBoard's own loader reads every
// step's loss, validation loss, learning rate, gradient norm and tokens/s
// (as metrics.jsonl has them), the eval's scores with their intervals,
// and the eval's headline as text.
func TestTensorBoardOnSmolLM2(t *testing.T) {
	t.Setenv("MLFLOW_TRACKING_URI", "")
	r := smolRecipe(t, 6, "")
	run, _, err := Start(context.Background(), r, TrainOptions{Out: filepath.Join(t.TempDir(), "run"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	res, err := run.Eval(context.Background(), EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	ev := tracktest.ReadEvents(t, run.Dir)
	checkStepScalars(t, readMetrics(t, run), ev.Scalars)
	tuned := res.Contestant("tuned").Scores["rouge_l"]
	for k, want := range map[string]float64{"eval/tuned/rouge_l": tuned.Value, "eval/tuned/rouge_l/ci_low": tuned.Low, "eval/tuned/rouge_l/ci_high": tuned.High} {
		got := ev.Scalars[k]
		if len(got) != 1 || got[0][0] != 6 || math.Abs(got[0][1]-want) > 1e-6 {
			t.Errorf("%s: TensorBoard read %v, want [[6 %g]]", k, got, want)
		}
	}
	if _, ok := ev.Scalars["eval/tuned_vs_base/rouge_l"]; !ok {
		t.Errorf("no tuned-vs-base difference among %d tags", len(ev.Scalars))
	}
	h := ev.Text["eval/headline"]
	if len(h) != 1 || !strings.Contains(h[0].Text, "| rouge_l |") {
		t.Errorf("headline text: %+v", h)
	}
}

// checkStepScalars checks that every step of metrics.jsonl is among the
// scalars by tag, as float32.
func checkStepScalars(t *testing.T, ms []lora.Metrics, got map[string][][2]float64) {
	t.Helper()
	if len(ms) == 0 {
		t.Fatal("no metrics")
	}
	want := map[string][][2]float64{}
	for _, m := range ms {
		for k, v := range stepScalars(m) {
			want[k] = append(want[k], [2]float64{float64(m.Step), v})
		}
	}
	if len(want["train/val_loss"]) < 2 {
		t.Fatalf("only %d validation losses", len(want["train/val_loss"]))
	}
	for tag, rows := range want {
		g := got[tag]
		if len(g) != len(rows) {
			t.Errorf("%s: %d values, want %d (%v)", tag, len(g), len(rows), g)
			continue
		}
		for i := range rows {
			if g[i][0] != rows[i][0] || math.Abs(g[i][1]-rows[i][1]) > 1e-6*math.Max(1, math.Abs(rows[i][1])) {
				t.Errorf("%s[%d] = %v, want %v", tag, i, g[i], rows[i])
			}
		}
	}
}
