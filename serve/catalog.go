package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/runs"
	"github.com/finetune-dev/finetune/sweeps"
)

// Entry is one model the server answers as: the base (Adapter "") or the
// base with one LoRA adapter.
type Entry struct {
	// Name is what a request's "model" says.
	Name string
	// Adapter is the adapter file (GGUF), "" for the base.
	Adapter string
	// Base is the base model the adapter was trained on, "" when unknown
	// (an adapter file without adapter.json).
	Base string
	// Template is the chat template as the run trained with it (see
	// datasets.RenderOptions.Template); System the system prompt its
	// training gave conversations without one; Stop the stop strings
	// its eval generated with.
	Template string
	System   string
	Stop     []string
	// From says what named it: "run folder DIR", "sweep DIR trial 003", ...
	From string
}

// ResolveOptions say where names that are not paths are looked up.
type ResolveOptions struct {
	// Best serves only the best trial of a sweep folder, under the
	// sweep's name, instead of every trial.
	Best bool
	// Runs is the folder of run folders where a published name is looked
	// up (runs/<recipe>/<timestamp>/publish.json).
	Runs string
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]*$`)

// Resolve turns command-line adapter references into entries. A reference
// is a run folder, a sweep folder (every finished trial, or with Best the
// best one), an adapter file (.gguf), or the name a run was published
// under (looked up among the run folders under Runs); NAME=REF names it.
func Resolve(ctx context.Context, refs []string, o ResolveOptions) ([]Entry, error) {
	var out []Entry
	seen := map[string]string{}
	for _, ref := range refs {
		name, target, named := strings.Cut(ref, "=")
		if !named {
			target, name = ref, ""
		}
		if target == "" {
			return nil, fmt.Errorf("adapter %q: nothing after %q; give NAME=RUN_DIR, NAME=SWEEP_DIR, NAME=ADAPTER.gguf or NAME=PUBLISHED_NAME", ref, "=")
		}
		es, err := resolveOne(ctx, target, o)
		if err != nil {
			return nil, err
		}
		if name != "" {
			if len(es) != 1 {
				return nil, fmt.Errorf("adapter %q: %s holds %d adapters, so one name cannot name them; use --best, or leave the name out (trials are named SWEEP/NNN)", ref, target, len(es))
			}
			es[0].Name = name
		}
		for _, e := range es {
			if !validName.MatchString(e.Name) {
				return nil, fmt.Errorf("adapter %q: %q is not a usable model name (letters, digits and . _ : / @ -, starting with a letter or digit); name it with NAME=%s", ref, e.Name, target)
			}
			if prev, dup := seen[e.Name]; dup {
				return nil, fmt.Errorf("two adapters are named %q (%s and %s): name one with NAME=REF", e.Name, prev, e.From)
			}
			seen[e.Name] = e.From
			out = append(out, e)
		}
	}
	return out, nil
}

func resolveOne(ctx context.Context, ref string, o ResolveOptions) ([]Entry, error) {
	st, err := os.Stat(ref)
	switch {
	case err == nil && st.IsDir():
		if _, err := os.Stat(filepath.Join(ref, sweeps.SpecFile)); err == nil {
			return fromSweep(ctx, ref, o.Best)
		}
		e, err := fromRun(ref)
		if err != nil {
			return nil, err
		}
		return []Entry{e}, nil
	case err == nil:
		e, err := fromFile(ref)
		if err != nil {
			return nil, err
		}
		return []Entry{e}, nil
	case strings.ContainsRune(ref, os.PathSeparator) || strings.HasSuffix(ref, ".gguf"):
		return nil, fmt.Errorf("adapter %s: %w", ref, err)
	}
	e, err := fromPublished(ref, o.Runs)
	if err != nil {
		return nil, err
	}
	return []Entry{e}, nil
}

// fromRun is a finished run folder's adapter, named after its recipe.
func fromRun(dir string) (Entry, error) {
	run, err := runs.Open(dir)
	if err != nil {
		return Entry{}, err
	}
	if _, err := os.Stat(run.Adapter()); err != nil {
		return Entry{}, fmt.Errorf("%s: the run has no adapter yet (state %s): finish it with `finetune train --resume %s`", dir, run.Record.State, dir)
	}
	e := Entry{Name: filepath.Base(filepath.Dir(run.Dir)), Adapter: run.Adapter(), Base: run.Base(), From: "run folder " + run.Dir}
	if r := run.Recipe; r != nil {
		if r.Name != "" {
			e.Name = r.Name
		}
		e.Template, e.System, e.Stop = r.Data.Template, r.Data.System, r.Eval.Generation.Stop
	}
	return e, nil
}

// fromSweep is every trial of a sweep with an adapter, named SWEEP/NNN,
// or with best the best trial, named after the sweep.
func fromSweep(ctx context.Context, dir string, best bool) ([]Entry, error) {
	s, err := sweeps.Open(dir)
	if err != nil {
		return nil, err
	}
	if best {
		lb, err := s.Build(ctx)
		if err != nil {
			return nil, err
		}
		runDir, err := lb.BestRun()
		if err != nil {
			return nil, err
		}
		e, err := fromRun(runDir)
		if err != nil {
			return nil, err
		}
		e.Name = s.Spec.Name
		e.From = fmt.Sprintf("sweep %s, best trial %s", s.Dir, filepath.Base(runDir))
		return []Entry{e}, nil
	}
	var out []Entry
	for _, t := range s.Spec.Trials {
		runDir := s.TrialDir(t.Index)
		if _, err := os.Stat(filepath.Join(runDir, runs.AdapterFile)); err != nil {
			continue
		}
		e, err := fromRun(runDir)
		if err != nil {
			return nil, err
		}
		e.Name = s.Spec.Name + "/" + t.Name()
		e.From = fmt.Sprintf("sweep %s trial %s (%s)", s.Dir, t.Name(), t.Label())
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no trial of the sweep has an adapter yet: see `finetune sweep status %s`", dir, dir)
	}
	return out, nil
}

// fromFile is an adapter file, named after it (or after its folder when
// it is a run's adapter.gguf); adapter.json beside it gives its base and
// the recipe it was trained with.
func fromFile(path string) (Entry, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Entry{}, err
	}
	if filepath.Base(abs) == runs.AdapterFile {
		if _, err := os.Stat(filepath.Join(filepath.Dir(abs), runs.RunFile)); err == nil {
			return fromRun(filepath.Dir(abs))
		}
	}
	name := strings.TrimSuffix(filepath.Base(abs), ".gguf")
	if name == "adapter" {
		name = filepath.Base(filepath.Dir(abs))
	}
	e := Entry{Name: name, Adapter: abs, From: "adapter file " + abs}
	if info, err := adapters.ReadInfo(abs); err == nil && info != nil {
		e.Base = info.Base.Path
	}
	return e, nil
}

// fromPublished is the run published under name: the newest run folder
// under root whose publish.json names it.
func fromPublished(name, root string) (Entry, error) {
	if root == "" {
		root = "runs"
	}
	want := strings.TrimSuffix(name, ":latest")
	matches, _ := filepath.Glob(filepath.Join(root, "*", "*", runs.PublishFile))
	var found string
	for _, p := range matches {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rec publish.Result
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		if strings.TrimSuffix(rec.Model, ":latest") == want && p > found {
			found = p // timestamps sort: the newest wins
		}
	}
	if found == "" {
		if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
			return Entry{}, fmt.Errorf("adapter %q: no such file or folder, and no %s folder to look it up as a published name (give --runs DIR)", name, root)
		}
		return Entry{}, fmt.Errorf("adapter %q: no such file or folder, and no run under %s was published as %q", name, root, name)
	}
	e, err := fromRun(filepath.Dir(found))
	if err != nil {
		return Entry{}, err
	}
	e.Name = name
	e.From = fmt.Sprintf("published name %s (run folder %s)", name, filepath.Dir(found))
	return e, nil
}
