package sweeps

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/track"
	"github.com/finetune-dev/finetune/track/tracktest"
)

// TestSweepInMLflow: a sweep of 2 trials on SmolLM2 is, on a real MLflow
// server, a parent run with the 2 trials' runs as its children, finished
// with the leaderboard as its artifacts.
func TestSweepInMLflow(t *testing.T) {
	srv := tracktest.StartMLflow(t)
	p := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	t.Setenv("FINETUNE_SHARED", filepath.Dir(filepath.Dir(p)))
	data, err := filepath.Abs("../recipes/data/customer-support")
	if err != nil {
		t.Fatal(err)
	}
	src := "name: smol-sweep\nbase: catalog:smollm2-135m-instruct\n" +
		"data:\n  train: " + data + "/train.jsonl\n  eval: " + data + "/eval.jsonl\n  seq_len: 160\n" +
		"lora:\n  rank: 4\n" +
		"train:\n  max_steps: 2\n  learning_rate: 4e-3\n  eval_every: 2\n  val_windows: 1\n  threads: 2\n  seed: 7\n" +
		"eval:\n  max_cases: 2\n  contestants:\n    - name: base\n      kind: local\n    - name: tuned\n      kind: local\n      adapter: tuned\n" +
		"  metrics:\n    - name: rouge_l\n  generation:\n    max_tokens: 8\n    temperature: 0\n" +
		"sweep:\n  grid:\n    lora.rank: [2, 4]\n" +
		"track:\n  mlflow: " + srv.URI + "\n  experiment: smol-sweep\n"
	path := filepath.Join(t.TempDir(), "recipe.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := Plan(r, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sw, err := Create(spec, filepath.Join(t.TempDir(), "sweep"), "", log)
	if err != nil {
		t.Fatal(err)
	}
	parent := track.ReadRecord(sw.Dir)
	if parent == nil {
		t.Fatalf("no parent run recorded in %s", sw.Dir)
	}
	for i := range spec.Trials {
		if err := sw.RunTrial(context.Background(), i, TrialOptions{Threads: 2, Logger: log}); err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
	}
	runs := srv.Runs("smol-sweep")
	var children []string
	for _, run := range runs {
		if run.Tag("mlflow.parentRunId") == parent.RunID {
			children = append(children, run.Param("lora.rank"))
		}
	}
	slices.Sort(children)
	if len(runs) != 3 || !slices.Equal(children, []string{"2", "4"}) {
		t.Fatalf("%d runs in the experiment, children with lora.rank %q; want the parent and 2 children (2, 4)", len(runs), children)
	}
	got := srv.GetRun(parent.RunID)
	if got.Info.Status != "FINISHED" || got.Param("sweep.grid.lora.rank") != "[2, 4]" {
		t.Errorf("parent run: status %s, params %v", got.Info.Status, got.Data.Params)
	}
	arts := srv.Artifacts(parent.RunID, "")
	for _, want := range []string{LeaderboardMD, LeaderboardHTML, LeaderboardJSON} {
		if !slices.Contains(arts, want) {
			t.Errorf("the parent run's artifacts %q lack %s", arts, want)
		}
	}
}
