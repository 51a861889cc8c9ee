// Package runs owns a training run: the run folder a user sees and shares
// (resolved recipe, data report, metrics, checkpoint, adapter, eval,
// Modelfile; layout.go names every file), made from a recipe or opened from
// disk, and the stages a run goes through: Distill (a teacher writes the
// training data), Train (and resume), Eval and Publish. Each stage takes the *Run; none re-derives paths or re-reads the
// recipe. A process that writes into a run holds its lock, so two processes
// never write one folder.
package runs

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/recipes"
)

// State is where a run is.
type State string

const (
	Created     State = "created"     // folder made, training not started
	Training    State = "training"    // a process is training (or was killed while it did)
	Interrupted State = "interrupted" // stopped by the user after a checkpoint; resumable
	Failed      State = "failed"      // training stopped on an error; resumable from its last checkpoint
	Finished    State = "finished"    // the adapter is final
)

// Record is run.json: how the run was started and where it is.
type Record struct {
	// Recipe is the recipe file the run was started from (absolute).
	Recipe string `json:"recipe"`
	// Overrides are the --set key.path=value the run was started with,
	// already applied in recipe.yaml.
	Overrides []string  `json:"overrides,omitempty"`
	Base      BaseModel `json:"base"`
	// Data is the data files' digests and the windowing settings, which
	// resume checks (nil in run.json made before it); DataChanges the
	// resumes that went on with changed data (--accept-changed-data).
	Data        *DataRecord  `json:"data,omitempty"`
	DataChanges []DataChange `json:"data_changes,omitempty"`
	// AddedTargets are the LoRA targets the run added to the recipe's
	// default ones (output, where the base does not produce its stop
	// token); recipe.yaml lists them among lora.targets.
	AddedTargets []string  `json:"added_targets,omitempty"`
	State        State     `json:"state"`
	Steps        int       `json:"steps"` // optimizer steps done at the last change of state
	Error        string    `json:"error,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
}

// BaseModel is the base a run trains on.
type BaseModel struct {
	Ref    string `json:"ref"`  // as the recipe names it: a file, ollama:NAME, builtin:NAME or catalog:NAME
	Path   string `json:"path"` // the GGUF file (absolute)
	SHA256 string `json:"sha256"`
}

// Run is one run folder.
type Run struct {
	Dir    string // absolute
	Record Record
	// Recipe is the recipe as trained (recipe.yaml), nil for a legacy
	// folder without one.
	Recipe *recipes.Recipe

	log     *slog.Logger
	fileLog *slog.Logger // train.log only: progress lines the terminal draws itself
	logFile *os.File
	lock    *os.File
}

// Path is the path of a file of the run folder (a layout.go name).
func (r *Run) Path(name string) string { return filepath.Join(r.Dir, name) }

// Adapter is the run's adapter file.
func (r *Run) Adapter() string { return r.Path(AdapterFile) }

// Base is the base model file trained on.
func (r *Run) Base() string { return r.Record.Base.Path }

// Logger is the run's logger: the logger given to Lock, and while the run
// trains, its train.log too.
func (r *Run) Logger() *slog.Logger {
	if r.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.log
}

// Open reads a run folder. It takes no lock: reading a run (export,
// inspection) does not need one.
func Open(dir string) (*Run, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: no such run folder", dir)
	}
	r := &Run{Dir: abs}
	b, err := os.ReadFile(r.Path(RunFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &r.Record); err != nil {
			return nil, fmt.Errorf("%s: %v (the run's record is damaged)", r.Path(RunFile), err)
		}
	case errors.Is(err, os.ErrNotExist):
		if err := r.openLegacy(); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if _, err := os.Stat(r.Path(RecipeFile)); err == nil {
		src, err := os.ReadFile(r.Path(RecipeFile))
		if err != nil {
			return nil, err
		}
		// recipe.yaml is resolved already: defaults filled, checked when
		// the run was made.
		if r.Recipe, err = recipes.Parse(r.Path(RecipeFile), src); err != nil {
			return nil, err
		}
		if r.Record.Recipe != "" {
			// Paths in recipe.yaml are absolute; legacy ones are relative
			// to the recipe it was resolved from.
			r.Recipe.Dir = filepath.Dir(r.Record.Recipe)
		}
	}
	return r, nil
}

// openLegacy reads a run folder made before run.json: base.txt names the
// base and recipe.yaml's first line the recipe it was resolved from.
func (r *Run) openLegacy() error {
	b, err := os.ReadFile(r.Path(LegacyBaseFile))
	if err != nil {
		if _, aerr := os.Stat(r.Adapter()); aerr != nil {
			return fmt.Errorf("%s: not a run folder (no %s)", r.Dir, RunFile)
		}
		return fmt.Errorf("%s: no %s naming the base model; give --base", r.Dir, RunFile)
	}
	base := strings.TrimSpace(string(b)) // absolute, or relative to where train ran
	r.Record = Record{Base: BaseModel{Path: base}, State: Finished}
	if src, err := os.ReadFile(r.Path(RecipeFile)); err == nil {
		first, _, _ := strings.Cut(string(src), "\n")
		if orig, ok := strings.CutPrefix(first, "# Resolved from "); ok {
			r.Record.Recipe = strings.TrimSuffix(orig, " (defaults filled in).")
		}
	}
	if _, err := os.Stat(r.Adapter()); err != nil {
		r.Record.State = Interrupted
	}
	return nil
}

// create makes a new run folder exclusively: dir itself when given (it
// must not exist, or be empty), else root/<timestamp>, with -2, -3, ...
// when another run took that name in the same second.
func create(dir, root string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return "", err
		}
		err = os.Mkdir(abs, 0o755)
		if errors.Is(err, os.ErrExist) {
			entries, rerr := os.ReadDir(abs)
			if rerr != nil {
				return "", rerr
			}
			if len(entries) > 0 && !onlyDistilled(entries) {
				what := "files that are not a run"
				if _, err := os.Stat(filepath.Join(abs, RunFile)); err == nil {
					what = "a run"
				} else if _, err := os.Stat(filepath.Join(abs, AdapterFile)); err == nil {
					what = "a run"
				}
				return "", fmt.Errorf("%s already holds %s: resume it with `finetune train --resume %s`, or give another --out", dir, what, dir)
			}
			return abs, nil
		}
		return abs, err
	}
	return atomicfile.NewStampedDir(root, time.Now())
}

// onlyDistilled reports whether a folder's entries are those Distill
// writes, which training then reads: a distilled run is trained in place.
func onlyDistilled(entries []os.DirEntry) bool {
	for _, e := range entries {
		switch e.Name() {
		case DistilledFile, DistillReportFile, LockFile:
		default:
			return false
		}
	}
	return true
}

// Lock takes the run folder's lock for this process, saying it does what
// (e.g. "finetune train"); the run's Logger is logger from then on. A
// second process gets an error naming the holder. Close releases it (so
// does the process's end, even by kill -9).
func (r *Run) Lock(what string, logger *slog.Logger) error {
	if r.lock != nil {
		return nil
	}
	f, err := os.OpenFile(r.Path(LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(r.Path(LockFile))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "another process"
			}
			return fmt.Errorf("%s is in use by %s: wait for it to finish, or stop it first", r.Dir, h)
		}
		return fmt.Errorf("%s: cannot lock the run folder: %w", r.Dir, err)
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s (pid %d on %s, since %s)", what, os.Getpid(), host, time.Now().Format("2006-01-02 15:04:05"))
	f.Truncate(0)
	f.WriteAt([]byte(holder+"\n"), 0)
	r.lock = f
	r.cleanTemporaries()

	r.log = logger
	return nil
}

// openLog makes the run's logger write to train.log too (training and
// resuming do; eval and publish record their outcome in their own files).
func (r *Run) openLog() error {
	if r.logFile != nil {
		return nil
	}
	lf, err := os.OpenFile(r.Path(LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.logFile = lf
	file := slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo})
	r.fileLog = slog.New(file)
	if r.log == nil {
		r.log = r.fileLog
	} else {
		r.log = slog.New(slog.NewMultiHandler(r.log.Handler(), file))
	}
	return nil
}

// cleanTemporaries removes the temporary files a killed process left
// (atomic writes that never got renamed). Only the lock holder calls it.
func (r *Run) cleanTemporaries() {
	entries, _ := os.ReadDir(r.Dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") {
			os.Remove(r.Path(n))
		}
	}
}

// Close releases the lock and the log file.
func (r *Run) Close() error {
	if r.logFile != nil {
		r.logFile.Close()
		r.logFile = nil
	}
	if r.lock != nil {
		r.lock.Truncate(0)
		err := r.lock.Close()
		r.lock = nil
		return err
	}
	return nil
}

// setState records a change of state in run.json.
func (r *Run) setState(s State, steps int, err error) error {
	r.Record.State, r.Record.Steps, r.Record.Updated = s, steps, time.Now().UTC()
	r.Record.Error = ""
	if err != nil {
		r.Record.Error = err.Error()
	}
	return r.writeRecord()
}

func (r *Run) writeRecord() error {
	b, err := json.MarshalIndent(&r.Record, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(r.Path(RunFile), append(b, '\n'))
}

// Newest is the newest run folder of the recipe called name under root
// (runs/<name>) for which keep says yes; keep nil keeps every run.
func Newest(root, name string, keep func(*Run) bool) (*Run, error) {
	dir := filepath.Join(root, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("no run of %q in %s", name, dir)
	}
	type cand struct {
		run  *Run
		when time.Time
	}
	var cs []cand
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "eval-") {
			continue
		}
		run, err := Open(filepath.Join(dir, e.Name()))
		if err != nil || (keep != nil && !keep(run)) {
			continue
		}
		when := run.Record.Created
		if when.IsZero() {
			if info, err := e.Info(); err == nil {
				when = info.ModTime()
			}
		}
		cs = append(cs, cand{run, when})
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("no run of %q in %s", name, dir)
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if c := a.when.Compare(b.when); c != 0 {
			return c
		}
		return strings.Compare(a.run.Dir, b.run.Dir)
	})
	return cs[len(cs)-1].run, nil
}
