package track_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/track"
	"github.com/finetune-dev/finetune/track/tracktest"
)

// logLines collects what a tracker logs.
type logLines struct{ bytes.Buffer }

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&l.Buffer, nil)) }

func (l *logLines) count(level, text string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, "level="+level) && strings.Contains(line, text) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestMLflowTracker: against a real MLflow server, a tracker makes its
// run with the parameters and tags, sends every step's metrics, a text,
// an artifact and the end status; a second tracker of the folder goes on
// in the same run. With the server stopped the tracker's calls return at
// once, it says so once, and what it could not send arrives when the
// server is back; what is unsent at Close is listed in the folder and
// sent by the next tracker.
func TestMLflowTracker(t *testing.T) {
	srv := tracktest.StartMLflow(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "note.md"), []byte("# note\n"), 0o644)
	var logs logLines
	cfg := track.Config{Dir: dir, MLflow: srv.URI, Experiment: "tracker-test", RunName: "r1",
		Params: map[string]string{"lora.rank": "8", "train.learning_rate": "0.004"}, Tags: map[string]string{"finetune.base": "b"},
		Logger: logs.logger(), Linger: 20 * time.Second, Retry: time.Second}
	tr, err := track.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for step := 1; step <= 5; step++ {
		tr.Scalars(step, map[string]float64{"train/loss": 1 / float64(step)})
	}
	tr.Text(5, "eval/headline", "| x |")
	tr.Artifact(filepath.Join(dir, "note.md"), "reports/note.md")
	tr.End("KILLED")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	rec := track.ReadRecord(dir)
	if rec == nil {
		t.Fatalf("no %s", track.MLflowFile)
	}
	run := srv.GetRun(rec.RunID)
	if run.Info.Status != "KILLED" || run.Param("lora.rank") != "8" || run.Tag("finetune.base") != "b" || run.Tag("eval/headline") != "| x |" || run.Info.RunName != "r1" {
		t.Fatalf("run as MLflow has it: %+v", run)
	}
	if got := srv.Artifacts(rec.RunID, ""); !slices.Equal(got, []string{"reports/note.md"}) {
		t.Fatalf("artifacts %q", got)
	}
	if b, err := srv.Artifact(rec.RunID, "reports/note.md"); err != nil || string(b) != "# note\n" {
		t.Fatalf("artifact content %q, %v", b, err)
	}

	// The same folder again (a resume): same run, running again; then the
	// server goes away.
	cfg.Running = true
	cfg.Linger = 2 * time.Second
	tr, err = track.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.Scalars(6, map[string]float64{"train/loss": 1.0 / 6})
	waitFor(t, "step 6", func() bool { return len(srv.History(rec.RunID, "train/loss")) == 6 })
	if st := srv.GetRun(rec.RunID).Info.Status; st != "RUNNING" {
		t.Errorf("resumed run's status %s", st)
	}
	srv.Stop()
	start := time.Now()
	for step := 7; step <= 12; step++ {
		tr.Scalars(step, map[string]float64{"train/loss": 1 / float64(step)})
		time.Sleep(300 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("logging to a stopped server took %s", d)
	}
	srv.Start()
	waitFor(t, "the steps sent while the server was down", func() bool { return len(srv.History(rec.RunID, "train/loss")) == 12 })
	if n := logs.count("WARN", "does not answer"); n != 1 {
		t.Errorf("%d warnings that the server does not answer, want 1:\n%s", n, logs.String())
	}

	// Down at Close: listed in the folder, sent by the next tracker.
	srv.Stop()
	tr.Scalars(13, map[string]float64{"train/loss": 1.0 / 13})
	tr.End("FINISHED")
	start = time.Now()
	tr.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close with the server down took %s", d)
	}
	pending, err := os.ReadFile(filepath.Join(dir, track.PendingFile))
	if err != nil || !strings.Contains(string(pending), `"step":13`) {
		t.Fatalf("%s: %q, %v", track.PendingFile, pending, err)
	}
	if logs.count("WARN", track.PendingFile) != 1 {
		t.Errorf("Close did not say where the unsent data is:\n%s", logs.String())
	}
	srv.Start()
	cfg.Running, cfg.Linger = false, 30*time.Second
	tr, _ = track.Open(cfg)
	tr.Close()
	if h := srv.History(rec.RunID, "train/loss"); len(h) != 13 {
		t.Errorf("%d losses after the next tracker, want 13", len(h))
	}
	if st := srv.GetRun(rec.RunID).Info.Status; st != "FINISHED" {
		t.Errorf("status %s, want FINISHED", st)
	}
	if _, err := os.Stat(filepath.Join(dir, track.PendingFile)); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", track.PendingFile, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, track.MLflowFile))
	if strings.Contains(string(b), "PASSWORD") || strings.Contains(string(b), "@") {
		t.Errorf("%s holds credentials: %s", track.MLflowFile, b)
	}
}
