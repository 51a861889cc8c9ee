package runs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/recipes"
)

// DataRecord is the data a run trains on as run.json records it: every
// data file's SHA-256 and the settings that turn the files into windows.
// Resume compares it with the files as they are then.
type DataRecord struct {
	Files     []DataFile `json:"files"`
	Windowing Windowing  `json:"windowing"`
}

// DataFile is one data file of a split.
type DataFile struct {
	Split  string `json:"split"` // train or eval
	Path   string `json:"path"`  // absolute
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Windowing is what makes windows of the records: the same files with
// other settings make other windows.
type Windowing struct {
	Format         string  `json:"format,omitempty"`
	Template       string  `json:"template,omitempty"`
	SeqLen         int     `json:"seq_len"`
	Packing        bool    `json:"packing"`
	Overflow       string  `json:"overflow"`
	TrainOnInputs  bool    `json:"train_on_inputs"`
	EvalRatio      float64 `json:"eval_ratio"`
	Seed           uint64  `json:"seed"`
	KeepDuplicates bool    `json:"keep_duplicates"`
	MaxBadRows     int     `json:"max_bad_rows"`
}

// DataChange is a resume that went on with data other than the run's
// (--accept-changed-data): when, at which step, and what differed.
type DataChange struct {
	At      time.Time `json:"at"`
	Step    int       `json:"step"`
	Changes []string  `json:"changes"`
}

// recordData hashes the recipe's data files (r's paths absolute or
// relative to its folder).
func recordData(r *recipes.Recipe) (*DataRecord, error) {
	d := &DataRecord{Windowing: Windowing{
		Format: r.Data.Format, Template: r.Data.Template, SeqLen: r.Data.SeqLen, Packing: packing(r), Overflow: r.Data.Overflow,
		TrainOnInputs: r.Data.TrainOnInputs, EvalRatio: r.Data.EvalRatio, Seed: r.Data.Seed, KeepDuplicates: r.Data.KeepDuplicates, MaxBadRows: r.Data.MaxBadRows,
	}}
	for _, s := range []struct{ split, pattern string }{{"train", r.Data.Train}, {"eval", r.Data.Eval}} {
		if s.pattern == "" {
			continue
		}
		files, err := datasets.Files(r.Resolve(s.pattern))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			sum, n, err := filehash.SHA256(f)
			if err != nil {
				return nil, err
			}
			d.Files = append(d.Files, DataFile{Split: s.split, Path: f, Size: n, SHA256: sum})
		}
	}
	return d, nil
}

// dataChanges lists how now differs from was, one phrase per file or
// setting.
func dataChanges(was, now *DataRecord) []string {
	var out []string
	key := func(f DataFile) string { return f.Split + "\x00" + f.Path }
	for _, w := range was.Files {
		i := slices.IndexFunc(now.Files, func(n DataFile) bool { return key(n) == key(w) })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("%s (%s) is gone", w.Path, w.Split))
		case now.Files[i].SHA256 != w.SHA256:
			out = append(out, fmt.Sprintf("%s (%s) changed: %d bytes then, %d now", w.Path, w.Split, w.Size, now.Files[i].Size))
		}
	}
	for _, n := range now.Files {
		if !slices.ContainsFunc(was.Files, func(w DataFile) bool { return key(w) == key(n) }) {
			out = append(out, fmt.Sprintf("%s (%s) is new", n.Path, n.Split))
		}
	}
	if was.Windowing != now.Windowing {
		a, _ := json.Marshal(was.Windowing)
		b, _ := json.Marshal(now.Windowing)
		out = append(out, fmt.Sprintf("the windowing settings changed: %s then, %s now", a, b))
	}
	return out
}

// DataChangedError is a resume refused because the data changed since
// the run started. Its message says what works for `finetune train`; a
// caller that resumes runs another way (a sweep's trials) says its own.
type DataChangedError struct {
	Dir     string   // the run folder
	Changes []string // what differs, one phrase each
	Recipe  string   // the recipe the run started from
}

func (e *DataChangedError) Error() string {
	return fmt.Sprintf("%s: the data changed since the run started: %s; resuming would train on other data than the run's first steps: restore the files, start a new run on the new data (`finetune train %s`), or resume anyway with --accept-changed-data",
		e.Dir, strings.Join(e.Changes, "; "), e.Recipe)
}

// checkData compares the data files with those the run recorded: a
// change is refused naming the files, unless accept, when it is recorded
// in run.json (and data-report.json describes the data the run goes on
// with). A run.json without digests resumes as before.
func (run *Run) checkData(accept bool, step int) (changed bool, err error) {
	log := run.Logger()
	if run.Record.Data == nil {
		log.Info("run.json records no data digests (a run made by an older finetune): resuming without checking the data files")
		return false, nil
	}
	now, err := recordData(run.Recipe)
	if err != nil {
		return false, fmt.Errorf("%s: the run's data: %w: restore it to resume, or start a new run", run.Dir, err)
	}
	changes := dataChanges(run.Record.Data, now)
	if len(changes) == 0 {
		return false, nil
	}
	if !accept {
		return false, &DataChangedError{Dir: run.Dir, Changes: changes, Recipe: run.Record.Recipe}
	}
	log.Warn("resuming on changed data (--accept-changed-data)", "changes", strings.Join(changes, "; "))
	run.Record.DataChanges = append(run.Record.DataChanges, DataChange{At: time.Now().UTC(), Step: step, Changes: changes})
	run.Record.Data = now
	return true, run.writeRecord()
}

// writeDataReport writes data-report.json.
func (run *Run) writeDataReport(d *Data) error {
	rep, err := json.MarshalIndent(d.Report, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(run.Path(DataReportFile), append(rep, '\n'))
}
