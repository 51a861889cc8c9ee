// Package sweeps runs many trials of one recipe (a grid of values for its
// key paths, or a seeded random sample of that grid) and ranks them on one
// leaderboard against the base and the recipe's API contestants.
//
// A sweep is a folder (layout.go names every file): the resolved sweep,
// one ordinary run folder per trial (made and trained by the runs
// package), a state file per trial written only by the process running
// it, and the submissions. The trials are handed to a scheduler that
// exists already: Slurm (one array job, `sbatch --array=…%K`), or local
// processes, K at a time with the cores divided among them. Each trial
// runs the finetune binary (`finetune sweep task DIR INDEX`), so a trial
// that crashes, runs out of memory or loses its node fails alone.
package sweeps

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/recipes"
)

// Axis is one key path of the grid and the values tried.
type Axis struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Trial is one point of the grid.
type Trial struct {
	Index int `json:"index"`
	// Sets are the trial's key=value, one per axis, applied after the
	// sweep's own overrides.
	Sets []string `json:"sets"`
	// Invalid says why the trial's recipe does not check; such a trial is
	// recorded failed when the sweep is made and never run.
	Invalid string `json:"invalid,omitempty"`
}

// Label is the trial's settings for people: "lora.rank=4 train.seed=1".
func (t Trial) Label() string { return strings.Join(t.Sets, " ") }

// Name is the trial's folder and file name: "003".
func (t Trial) Name() string { return fmt.Sprintf("%03d", t.Index) }

// Metric is what ranks the trials: a score column of a contestant.
type Metric struct {
	Contestant string `json:"contestant"`
	Column     string `json:"column"`
}

func (m Metric) String() string { return m.Contestant + "." + m.Column }

// Spec is sweep.json: everything a trial needs to run, fixed when the
// sweep is made.
type Spec struct {
	Name string `json:"name"`
	// Recipe is the recipe file (absolute), Overrides the --set values
	// every trial gets.
	Recipe    string   `json:"recipe"`
	Overrides []string `json:"overrides,omitempty"`
	// Source is the recipe's text when the sweep was made: every trial
	// decodes this, so editing the recipe file later changes no trial
	// (relative paths still start at the recipe's folder).
	Source string `json:"source"`
	Axes   []Axis `json:"axes"`
	// Combinations is the size of the grid; Sample, when above 0, the
	// size of the seeded random sample of it that Trials are.
	Combinations int           `json:"combinations"`
	Sample       int           `json:"sample,omitempty"`
	Seed         uint64        `json:"seed,omitempty"`
	Trials       []Trial       `json:"trials"`
	Executor     string        `json:"executor"`
	MaxParallel  int           `json:"max_parallel"`
	Metric       Metric        `json:"metric"`
	Slurm        recipes.Slurm `json:"slurm"`
	Created      time.Time     `json:"created"`
}

// recipe decodes the sweep's recipe with sets.
func (s *Spec) recipe(sets []string) (*recipes.Recipe, error) {
	return recipes.Decode(s.Recipe, []byte(s.Source), sets)
}

// Sweep is one sweep folder.
type Sweep struct {
	Dir  string // absolute
	Spec Spec
}

// Path is the path of a file of the sweep folder (a layout.go name).
func (s *Sweep) Path(parts ...string) string {
	return filepath.Join(append([]string{s.Dir}, parts...)...)
}

// TrialDir is the run folder of trial i.
func (s *Sweep) TrialDir(i int) string { return s.Path(TrialsDir, fmt.Sprintf("%03d", i)) }

func (s *Sweep) statePath(i int) string { return s.Path(StateDir, fmt.Sprintf("%03d.json", i)) }

// Trial returns trial i, or an error naming the sweep's range.
func (s *Sweep) Trial(i int) (Trial, error) {
	if i < 0 || i >= len(s.Spec.Trials) {
		return Trial{}, fmt.Errorf("%s: no trial %d (the sweep has trials 0 to %d)", s.Dir, i, len(s.Spec.Trials)-1)
	}
	return s.Spec.Trials[i], nil
}

// PlanOptions are the command line's additions to the recipe's sweep
// section: they win over it.
type PlanOptions struct {
	// Overrides are the --set values of every trial (already applied to
	// the recipe given to Plan).
	Overrides []string
	// Grid are --grid key=v1,v2,... axes; an axis of a key the recipe's
	// grid has replaces it there.
	Grid        []string
	Trials      int    // --trials N: a random sample of N combinations
	Seed        uint64 // of the sample
	Executor    string
	MaxParallel int
	Metric      string
}

// maxCombinations bounds the grid a sweep enumerates.
const maxCombinations = 100000

// Plan resolves a sweep from a recipe (loaded with o.Overrides) and the
// command line: the axes, the trials (every combination, or a seeded
// sample), the executor and the metric. Each trial's recipe is checked;
// one that does not check is kept, marked Invalid.
func Plan(r *recipes.Recipe, o PlanOptions) (*Spec, error) {
	sw := r.Sweep
	var axes []Axis
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range sw.Grid {
			if !yield(k) {
				return
			}
		}
	}) {
		axes = append(axes, Axis{Key: k, Values: sw.Grid[k]})
	}
	for _, g := range o.Grid {
		key, vals, ok := strings.Cut(g, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.TrimSpace(vals) == "" {
			return nil, fmt.Errorf("--grid %q: write key.path=value1,value2,... (like --grid lora.rank=4,8)", g)
		}
		if err := recipes.CheckKey(key); err != nil {
			return nil, fmt.Errorf("--grid %s: %v", g, err)
		}
		if key == "name" || key == "sweep" || strings.HasPrefix(key, "sweep.") {
			return nil, fmt.Errorf("--grid %s: %s cannot vary between trials", g, key)
		}
		var values []string
		for _, v := range strings.Split(vals, ",") {
			values = append(values, strings.TrimSpace(v))
		}
		if i := slices.IndexFunc(axes, func(a Axis) bool { return a.Key == key }); i >= 0 {
			axes[i].Values = values
		} else {
			axes = append(axes, Axis{Key: key, Values: values})
		}
	}
	if len(axes) == 0 {
		return nil, fmt.Errorf("%s: nothing to sweep: give a sweep.grid section in the recipe, or --grid key.path=v1,v2", r.Path)
	}
	for _, a := range axes {
		seen := map[string]bool{}
		for _, v := range a.Values {
			if seen[v] {
				return nil, fmt.Errorf("%s: the value %q is listed twice for %s", r.Path, v, a.Key)
			}
			seen[v] = true
		}
	}
	total := 1
	for _, a := range axes {
		total *= len(a.Values)
		if total > maxCombinations {
			return nil, fmt.Errorf("%s: the grid has more than %d combinations: sample it with --trials N (sweep.trials), or give fewer values", r.Path, maxCombinations)
		}
	}
	from, err := filepath.Abs(r.Path)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(r.Path)
	if err != nil {
		return nil, err
	}
	spec := &Spec{Name: r.Name, Recipe: from, Source: string(src), Overrides: o.Overrides, Axes: axes, Combinations: total,
		Executor: firstOf(o.Executor, sw.Executor, "local"), MaxParallel: max(o.MaxParallel, 0), Slurm: sw.Slurm, Created: time.Now().UTC()}
	if spec.MaxParallel == 0 {
		spec.MaxParallel = max(sw.MaxParallel, 1)
	}
	if spec.Executor != "local" && spec.Executor != "slurm" {
		return nil, fmt.Errorf("--executor %q: use local or slurm", spec.Executor)
	}
	spec.Sample = sw.Trials
	if o.Trials > 0 {
		spec.Sample = o.Trials
	}
	spec.Seed = firstOf(o.Seed, sw.Seed, r.Train.Seed)
	chosen := make([]int, total)
	for i := range chosen {
		chosen[i] = i
	}
	if spec.Sample > 0 && spec.Sample < total {
		rng := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
		rng.Shuffle(total, func(i, j int) { chosen[i], chosen[j] = chosen[j], chosen[i] })
		chosen = chosen[:spec.Sample]
		slices.Sort(chosen)
	} else {
		spec.Sample = 0
	}
	for n, c := range chosen {
		t := Trial{Index: n}
		// The last axis varies fastest.
		for i := len(axes) - 1; i >= 0; i-- {
			a := axes[i]
			t.Sets = append([]string{a.Key + "=" + a.Values[c%len(a.Values)]}, t.Sets...)
			c /= len(a.Values)
		}
		if _, err := recipes.Decode(r.Path, src, append(slices.Clone(o.Overrides), t.Sets...)); err != nil {
			t.Invalid = err.Error()
		}
		spec.Trials = append(spec.Trials, t)
	}
	m := *r
	if o.Metric != "" {
		m.Sweep.Metric = o.Metric
	}
	contestant, column, err := m.SweepMetric()
	if err != nil {
		return nil, fmt.Errorf("--metric %s: %v", o.Metric, err)
	}
	spec.Metric = Metric{contestant, column}
	return spec, nil
}

func firstOf[T comparable](xs ...T) T {
	var zero T
	for _, x := range xs {
		if x != zero {
			return x
		}
	}
	return zero
}

// Create makes the sweep folder exclusively (out, which must not exist or
// be empty; else root/<name>/<timestamp>) and writes sweep.json; a trial
// whose recipe does not check is recorded failed with its error.
func Create(spec *Spec, out, root string, log *slog.Logger) (*Sweep, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := makeDir(out, filepath.Join(root, spec.Name))
	if err != nil {
		return nil, err
	}
	s := &Sweep{Dir: dir, Spec: *spec}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(s.Path(SpecFile), append(b, '\n')); err != nil {
		return nil, err
	}
	for _, t := range spec.Trials {
		if t.Invalid == "" {
			continue
		}
		log.Warn("this trial's recipe does not check: it is recorded failed and not run", "trial", t.Index, "settings", t.Label(), "err", t.Invalid)
		now := time.Now().UTC()
		if err := s.writeStatus(Status{Index: t.Index, State: Failed, Error: t.Invalid, Started: now, Ended: now}); err != nil {
			return nil, err
		}
	}
	// The parent MLflow run of the trials' runs.
	if t := s.openTracker(log); t != nil {
		t.Close()
	}
	return s, nil
}

// makeDir makes a new folder exclusively: dir itself when given (it must
// not exist, or be empty), else root/<timestamp>[-N].
func makeDir(dir, root string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return "", err
		}
		if err := os.Mkdir(abs, 0o755); errors.Is(err, os.ErrExist) {
			if entries, _ := os.ReadDir(abs); len(entries) > 0 {
				return "", fmt.Errorf("%s already holds files: give a new --out, or `finetune sweep resume %s` if it is a sweep", dir, dir)
			}
		} else if err != nil {
			return "", err
		}
		return abs, nil
	}
	return atomicfile.NewStampedDir(root, time.Now())
}

// Open reads a sweep folder.
func Open(dir string) (*Sweep, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, SpecFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, rerr := os.Stat(filepath.Join(abs, "run.json")); rerr == nil {
			return nil, fmt.Errorf("%s is a run folder, not a sweep (no %s)", dir, SpecFile)
		}
		return nil, fmt.Errorf("%s: not a sweep folder (no %s): make one with `finetune sweep RECIPE.yaml`", dir, SpecFile)
	}
	if err != nil {
		return nil, err
	}
	s := &Sweep{Dir: abs}
	if err := json.Unmarshal(b, &s.Spec); err != nil {
		return nil, fmt.Errorf("%s: %v (the sweep's record is damaged)", filepath.Join(abs, SpecFile), err)
	}
	return s, nil
}
