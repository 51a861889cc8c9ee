// Package tracktest holds the trackers' own readers for tests: TensorBoard's
// Python loader over a folder's event files, and a real MLflow tracking
// server (scripts/install-mlflow.sh) with its REST API.
package tracktest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/finetune-dev/finetune/internal/pyref"
)

// Events is what TensorBoard reads from a folder: every scalar and text
// summary by tag, as [step, value] pairs in the order written.
type Events struct {
	Scalars map[string][][2]float64 `json:"scalars"`
	Text    map[string][]struct {
		Step int
		Text string
	} `json:"-"`
	RawText map[string][][2]any `json:"text"`
	Files   int                 `json:"files"`
}

// ReadEvents reads dir's event files with TensorBoard's own loader (the
// tensorboard package of scripts/install-pyref.sh's environment), skipping
// the test loudly where it is not installed.
func ReadEvents(tb testing.TB, dir string) *Events {
	tb.Helper()
	py, err := pyref.Python()
	if err != nil {
		tb.Skipf("SKIPPED: TensorBoard's reader is not installed: %v; %s", err, pyref.InstallHint)
	}
	if err := exec.Command(py, "-c", "import tensorboard").Run(); err != nil {
		tb.Skipf("SKIPPED: %s has no tensorboard package: run scripts/install-pyref.sh again (it pins tensorboard)", py)
	}
	sc, err := pyref.Script("tbread.py")
	if err != nil {
		tb.Fatalf("scripts/pyref/tbread.py: %v", err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(py, sc, dir)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s %s: %v\n%s", py, sc, dir, err, stderr.String())
	}
	var ev Events
	if err := json.Unmarshal(out.Bytes(), &ev); err != nil {
		tb.Fatalf("tbread.py's output: %v\n%s", err, out.String())
	}
	ev.Text = map[string][]struct {
		Step int
		Text string
	}{}
	for tag, rows := range ev.RawText {
		for _, r := range rows {
			step, _ := r[0].(float64)
			text, _ := r[1].(string)
			ev.Text[tag] = append(ev.Text[tag], struct {
				Step int
				Text string
			}{int(step), text})
		}
	}
	return &ev
}
