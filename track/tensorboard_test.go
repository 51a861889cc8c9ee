package track_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/track"
	"github.com/finetune-dev/finetune/track/tracktest"
)

// TensorBoard's own loader reads back every scalar and the text a
// tracker wrote, from two event files (a run and its resume) in one
// folder; a torn last record (a killed writer) does not hide the others.
func TestEventFilesReadByTensorBoard(t *testing.T) {
	dir := t.TempDir()
	want := map[string][][2]float64{}
	write := func(from, to int) {
		tr, err := track.Open(track.Config{Dir: dir, TensorBoard: true})
		if err != nil {
			t.Fatal(err)
		}
		for step := from; step <= to; step++ {
			v := map[string]float64{"train/loss": 3 / float64(step), "train/lr": 1e-4 * float64(step), "train/tokens_per_s": 1234.5 + float64(step)}
			if step%3 == 0 {
				v["train/val_loss"] = 2.5 / float64(step)
			}
			for k, x := range v {
				want[k] = append(want[k], [2]float64{float64(step), x})
			}
			v["train/bad"] = math.NaN() // left out
			tr.Scalars(step, v)
		}
		tr.Text(to, "eval/headline", "**tuned** beats base: +0.25 [+0.10, +0.40]")
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // event files are named by the second
	}
	write(1, 6)
	write(7, 10)
	ev := tracktest.ReadEvents(t, dir)
	if ev.Files != 2 {
		t.Fatalf("%d event files, want 2", ev.Files)
	}
	if _, ok := ev.Scalars["train/bad"]; ok {
		t.Error("a NaN was written")
	}
	for tag, rows := range want {
		got := ev.Scalars[tag]
		if len(got) != len(rows) {
			t.Fatalf("%s: TensorBoard read %d values, want %d: %v", tag, len(got), len(rows), got)
		}
		for i := range rows {
			if got[i][0] != rows[i][0] || math.Abs(got[i][1]-rows[i][1]) > 1e-6*math.Abs(rows[i][1]) {
				t.Errorf("%s[%d] = %v, want %v (float32)", tag, i, got[i], rows[i])
			}
		}
	}
	if txt := ev.Text["eval/headline"]; len(txt) != 2 || txt[1].Step != 10 || !strings.Contains(txt[1].Text, "+0.25 [+0.10, +0.40]") {
		t.Errorf("text read back: %+v", txt)
	}

	// A killed writer leaves a torn record at the end of its file.
	files, _ := filepath.Glob(filepath.Join(dir, "*tfevents*"))
	f, err := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{40, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	f.Close()
	if ev := tracktest.ReadEvents(t, dir); len(ev.Scalars["train/loss"]) != 10 {
		t.Errorf("after a torn record: %d losses, want 10", len(ev.Scalars["train/loss"]))
	}
}

// BenchmarkScalars: what one training step's figures cost the run with
// TensorBoard on (six scalars, written and flushed to the event file).
func BenchmarkScalars(b *testing.B) {
	tr, err := track.Open(track.Config{Dir: b.TempDir(), TensorBoard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	v := map[string]float64{"train/loss": 1.5, "train/val_loss": 1.6, "train/learning_rate": 4e-3, "train/grad_norm": 0.9, "train/tokens_per_s": 900, "train/epoch": 0.1}
	for i := 0; b.Loop(); i++ {
		tr.Scalars(i, v)
	}
}
