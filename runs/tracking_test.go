package runs

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/track"
	"github.com/finetune-dev/finetune/track/tracktest"
)

// smolRecipe is a short run of SmolLM2-135M-Instruct on the customer
// support recipe's data (steps training steps, validation every 3), with
// a 4-case eval of base and tuned; extra is appended to the recipe.
func smolRecipe(t *testing.T, steps int, extra string, sets ...string) *recipes.Recipe {
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
	return recipe(t, t.TempDir(), body, sets...)
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

// syncBuffer is a log sink that the tracker's goroutine and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMLflowOnSmolLM2: a SmolLM2 run, interrupted and resumed, then
// evaluated, is one MLflow run on a real server: the recipe as its
// parameters, every step's loss, validation loss, learning rate, gradient
// norm and tokens/s as metrics.jsonl has them, the eval's scores with
// their intervals, and the adapter's metadata, data report and eval
// reports as artifacts. The server is stopped for some steps of the
// resumed training: the run finishes, says so once, and the metrics of
// those steps arrive once the server is back.
func TestMLflowOnSmolLM2(t *testing.T) {
	srv := tracktest.StartMLflow(t)
	r := smolRecipe(t, 9, "track:\n  mlflow: "+srv.URI+"\n  experiment: smol-track\n")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	out := filepath.Join(t.TempDir(), "run")
	run, res, err := Start(ctx, r, TrainOptions{Out: out, Logger: log, Progress: func(m lora.Metrics) {
		if m.Step == 3 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	if !res.Interrupted {
		t.Fatal("not interrupted")
	}
	first := track.ReadRecord(run.Dir)
	if first == nil {
		t.Fatalf("no %s after the first session:\n%s", track.MLflowFile, logs.String())
	}
	if st := srv.GetRun(first.RunID).Info.Status; st != "KILLED" {
		t.Errorf("interrupted run's status %s", st)
	}
	run, err = Open(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err = run.Resume(context.Background(), TrainOptions{Logger: log, Progress: func(m lora.Metrics) {
		switch m.Step {
		case 5:
			srv.Stop()
		case 7:
			srv.Start()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	if res.Interrupted || res.Steps != 9 {
		t.Fatalf("resumed run: %+v", res)
	}
	eres, err := run.Eval(context.Background(), EvalOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	rec := track.ReadRecord(run.Dir)
	if rec == nil || rec.RunID != first.RunID {
		t.Fatalf("the resumed run went to MLflow run %+v, not %s", rec, first.RunID)
	}
	if n := strings.Count(logs.String(), "does not answer"); n != 1 {
		t.Errorf("%d warnings that MLflow does not answer, want 1:\n%s", n, logs.String())
	}
	if _, err := os.Stat(run.Path(track.PendingFile)); err == nil {
		t.Errorf("%s left though the server answered", track.PendingFile)
	}
	got := srv.GetRun(rec.RunID)
	if got.Info.Status != "FINISHED" || got.Param("lora.rank") != "4" || got.Param("train.max_steps") != "9" || got.Param("base") != "catalog:smollm2-135m-instruct" {
		t.Errorf("MLflow's run: status %s, params %v", got.Info.Status, got.Data.Params)
	}
	if runs := srv.Runs("smol-track"); len(runs) != 1 {
		t.Errorf("%d MLflow runs in the experiment, want 1", len(runs))
	}
	// Every step, as metrics.jsonl has it (the last value of a step a
	// resume did again).
	hist := map[string][][2]float64{}
	for _, m := range readMetrics(t, run) {
		for k := range stepScalars(m) {
			if _, ok := hist[k]; !ok {
				for _, p := range srv.History(rec.RunID, k) {
					hist[k] = append(hist[k], [2]float64{float64(p.Step), p.Value})
				}
			}
		}
	}
	checkStepScalars(t, lastPerStep(readMetrics(t, run)), lastOf(hist))
	tuned := eres.Contestant("tuned").Scores["label_accuracy"]
	for k, want := range map[string]float64{"eval/tuned/label_accuracy": tuned.Value, "eval/tuned/label_accuracy/ci_low": tuned.Low, "eval/tuned/label_accuracy/ci_high": tuned.High} {
		if h := srv.History(rec.RunID, k); len(h) != 1 || h[0].Value != want || h[0].Step != 9 {
			t.Errorf("%s: %v, want %g at step 9", k, h, want)
		}
	}
	arts := srv.Artifacts(rec.RunID, "")
	for _, want := range []string{AdapterInfoFile, DataReportFile, "eval/results.json", "eval/report.md", "eval/report.html"} {
		if !slices.Contains(arts, want) {
			t.Errorf("artifact %s missing from %q", want, arts)
		}
	}
	if b, err := srv.Artifact(rec.RunID, "eval/results.json"); err != nil || !strings.Contains(string(b), `"contestants"`) {
		t.Errorf("eval/results.json as MLflow serves it: %v", err)
	}
}

// lastPerStep keeps the last metrics of each step (a resume from a
// checkpoint repeats the steps after it).
func lastPerStep(ms []lora.Metrics) []lora.Metrics {
	var out []lora.Metrics
	for _, m := range ms {
		if n := len(out); n > 0 && out[n-1].Step >= m.Step {
			for len(out) > 0 && out[len(out)-1].Step >= m.Step {
				out = out[:len(out)-1]
			}
		}
		out = append(out, m)
	}
	return out
}

// lastOf keeps the last value of each step of every history.
func lastOf(h map[string][][2]float64) map[string][][2]float64 {
	out := map[string][][2]float64{}
	for k, rows := range h {
		var kept [][2]float64
		for _, r := range rows {
			if n := len(kept); n > 0 && kept[n-1][0] == r[0] {
				kept[n-1] = r
				continue
			}
			kept = append(kept, r)
		}
		out[k] = kept
	}
	return out
}

// TestTrackingOverhead measures what tracking costs a short SmolLM2 run:
// runs without any tracker and with both (TensorBoard event files and a
// real MLflow server on the same machine), alternated, side by side. It
// runs only when FINETUNE_TRACK_OVERHEAD=N (N pairs) is set: it is a
// measurement, not a check.
func TestTrackingOverhead(t *testing.T) {
	pairs, _ := strconv.Atoi(os.Getenv("FINETUNE_TRACK_OVERHEAD"))
	if pairs <= 0 {
		t.Skip("SKIPPED: a measurement; FINETUNE_TRACK_OVERHEAD=3 runs 3 pairs")
	}
	srv := tracktest.StartMLflow(t)
	off := smolRecipe(t, 10, "track:\n  mlflow: \"off\"\n  tensorboard: false\n", "train.eval_every=10")
	on := smolRecipe(t, 10, "track:\n  mlflow: "+srv.URI+"\n  experiment: overhead\n", "train.eval_every=10")
	var rows [2][]*lora.Result
	var walls [2][]float64
	for i := 0; i < 2*pairs; i++ {
		mode := i % 2
		if (i/2)%2 == 1 {
			mode = 1 - mode // ABBA: neither goes first every time
		}
		r := []*recipes.Recipe{off, on}[mode]
		start := time.Now()
		run, res, err := Start(context.Background(), r, TrainOptions{Out: filepath.Join(t.TempDir(), "run"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		run.Close()
		wall := time.Since(start).Seconds()
		rows[mode] = append(rows[mode], res)
		walls[mode] = append(walls[mode], wall)
		t.Logf("%-8s steps %5.1fs  wall %5.1fs  (%.0f tokens/s)", []string{"off", "tracked"}[mode], res.StepsSeconds, wall, float64(res.TokensSeen)/res.StepsSeconds)
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	var steps [2][]float64
	for m := range rows {
		for _, r := range rows[m] {
			steps[m] = append(steps[m], r.StepsSeconds)
		}
	}
	t.Logf("median steps time: off %.1fs, tracked %.1fs (x%.3f); median wall: off %.1fs, tracked %.1fs (x%.3f)",
		med(steps[0]), med(steps[1]), med(steps[1])/med(steps[0]), med(walls[0]), med(walls[1]), med(walls[1])/med(walls[0]))
}
