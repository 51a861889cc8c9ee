package sweeps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

// TrialOptions of RunTrial.
type TrialOptions struct {
	// Threads is what training and the local contestants use when the
	// trial's recipe leaves train.threads out: the executor's share of the
	// cores (Slurm's cpus per task).
	Threads int
	Base    basemodel.Options
	Logger  *slog.Logger
	// AcceptChangedData lets a trial's run resume although the data
	// files changed since it started (recorded in its run.json), as
	// `finetune train --resume --accept-changed-data` does.
	AcceptChangedData bool
}

// RunTrial trains and evaluates trial i of the sweep in its run folder:
// a new run, or, when the folder holds an unfinished one with a
// checkpoint (a killed or cancelled task), that run resumed from it. It
// records the outcome in the trial's state file, and then updates the
// leaderboard. The error is the trial's, already recorded.
func (s *Sweep) RunTrial(ctx context.Context, i int, o TrialOptions) error {
	t, err := s.Trial(i)
	if err != nil {
		return err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("trial", t.Index)
	prev, _ := s.ReadStatus(i)
	host, _ := os.Hostname()
	st := Status{Index: i, State: Running, Attempt: 1, Host: host, PID: os.Getpid(), Started: time.Now().UTC()}
	if prev != nil {
		st.Attempt = prev.Attempt + 1
	}
	if id := os.Getenv("SLURM_ARRAY_JOB_ID"); id != "" {
		st.Job = id + "_" + os.Getenv("SLURM_ARRAY_TASK_ID")
	}
	if err := s.writeStatus(st); err != nil {
		return err
	}
	err = s.runTrial(ctx, t, &st, o, log)
	st.Ended = time.Now().UTC()
	if err != nil {
		st.State, st.Error = Failed, err.Error()
		log.Error("trial failed", "settings", t.Label(), "err", err)
	} else {
		st.State = Done
		log.Info("trial done", "settings", t.Label(), "train_s", fmt.Sprintf("%.1f", st.TrainSeconds), "eval_s", fmt.Sprintf("%.1f", st.EvalSeconds))
	}
	if werr := s.writeStatus(st); werr != nil {
		return errors.Join(err, werr)
	}
	if _, lerr := s.writeLeaderboard(context.WithoutCancel(ctx), log); lerr != nil {
		log.Warn("could not update the leaderboard", "err", lerr)
	}
	return err
}

// trialRecipe is trial t's recipe: the sweep's recipe with its overrides
// and the trial's settings, without the sweep section.
func (s *Sweep) trialRecipe(t Trial, threads int) (*recipes.Recipe, []string, error) {
	if t.Invalid != "" {
		return nil, nil, errors.New(t.Invalid)
	}
	sets := append(slices.Clone(s.Spec.Overrides), t.Sets...)
	r, err := s.Spec.recipe(sets)
	if err != nil {
		return nil, nil, err
	}
	r.Sweep = recipes.Sweep{}
	if r.Train.Threads == 0 && threads > 0 {
		r.Train.Threads = threads
	}
	return r, sets, nil
}

func (s *Sweep) runTrial(ctx context.Context, t Trial, st *Status, o TrialOptions, log *slog.Logger) error {
	r, sets, err := s.trialRecipe(t, o.Threads)
	if err != nil {
		return err
	}
	st.Threads = r.Train.Threads
	dir := s.TrialDir(t.Index)
	command := fmt.Sprintf("finetune sweep task %s %d", s.Dir, t.Index)
	topts := runs.TrainOptions{Out: dir, Overrides: sets, Command: command, Base: o.Base, Logger: log, AcceptChangedData: o.AcceptChangedData,
		TrackParent: s.trackParent()}
	start := time.Now()
	var run *runs.Run
	if _, serr := os.Stat(filepath.Join(dir, runs.RunFile)); serr == nil {
		run, err = runs.Open(dir)
		if err != nil {
			return err
		}
		defer run.Close()
		_, ckerr := os.Stat(run.Path(runs.CheckpointFile))
		switch {
		case run.Record.State == runs.Finished:
			log.Info("the trial's run is trained already", "run", dir)
		case ckerr == nil:
			if f, gerr := gguf.Open(run.Path(runs.CheckpointFile)); gerr == nil {
				if n, ok := f.Uint("finetune.checkpoint.step"); ok {
					st.ResumedFrom = int(n)
				}
			}
			log.Info("resuming the trial's run from its checkpoint", "run", dir, "from_step", st.ResumedFrom)
			res, err := run.Resume(ctx, topts)
			if dc := (*runs.DataChangedError)(nil); errors.As(err, &dc) {
				return s.dataChanged(dc)
			}
			if err != nil {
				return err
			}
			if res.Interrupted {
				st.Steps = res.Steps
				return interrupted(s, res.Steps)
			}
		default:
			// Stopped before its first checkpoint: nothing to keep.
			run.Close()
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			run = nil
		}
	}
	if run == nil {
		os.RemoveAll(dir) // a folder a killed Start left before run.json
		r2, lres, err := runs.Start(ctx, r, topts)
		if r2 != nil {
			defer r2.Close()
		}
		if err != nil {
			return err
		}
		run = r2
		if lres.Interrupted {
			st.Steps = lres.Steps
			return interrupted(s, lres.Steps)
		}
	}
	st.Steps = run.Record.Steps
	st.TrainSeconds = time.Since(start).Seconds()
	s.writeStatus(*st)
	start = time.Now()
	if _, err := run.Eval(ctx, runs.EvalOptions{CacheDir: s.Path(CacheDir), Base: o.Base, Logger: log}); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	st.EvalSeconds = time.Since(start).Seconds()
	return nil
}

// dataChanged is the refusal of a trial's resume on changed data, with
// the commands that work for a sweep.
func (s *Sweep) dataChanged(e *runs.DataChangedError) error {
	return fmt.Errorf("%s: the data changed since the trial's run started: %s; resuming would train on other data than its first steps: restore the files, start a new sweep on the new data (`finetune sweep %s`), or resume anyway with `finetune sweep resume %s --accept-changed-data`",
		e.Dir, strings.Join(e.Changes, "; "), s.Spec.Recipe, s.Dir)
}

func interrupted(s *Sweep, steps int) error {
	return fmt.Errorf("stopped (cancelled or interrupted) at step %d after a checkpoint: `finetune sweep resume %s` continues it", steps, s.Dir)
}

// AnswerShared asks the recipe's API contestants (ollama, openai) every
// eval case once for the whole sweep, into the answer cache the trials
// share: their answers do not depend on the trial, so no trial asks them
// again (a trial that changes what they are asked, such as the eval
// generation settings or the base's template, asks for itself). The
// results are returned for the log; nil when there is no API contestant.
func (s *Sweep) AnswerShared(ctx context.Context, o TrialOptions) (*evals.Results, error) {
	r, err := s.Spec.recipe(s.Spec.Overrides)
	if err != nil {
		return nil, err
	}
	c := *r
	c.Eval.Contestants = nil
	for _, ct := range r.Eval.Contestants {
		if ct.Kind != "local" {
			c.Eval.Contestants = append(c.Eval.Contestants, ct)
		}
	}
	if len(c.Eval.Contestants) == 0 {
		return nil, nil
	}
	c.Eval.Metrics = slices.DeleteFunc(slices.Clone(r.Eval.Metrics), func(m recipes.Metric) bool { return m.Name == "judge" })
	if len(c.Eval.Metrics) == 0 {
		c.Eval.Metrics = []recipes.Metric{{Name: "exact_match"}}
	}
	base, err := basemodel.Resolve(ctx, r.Base, r.Dir, o.Base)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
	}
	cases, sel, err := runs.Cases(&c, base)
	if err != nil {
		return nil, err
	}
	plan, err := runs.PlanEval(&c, base, "", cases)
	if err != nil {
		return nil, err
	}
	defer plan.Close()
	var names []string
	for _, ct := range c.Eval.Contestants {
		names = append(names, ct.Name)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("asking the API contestants once for the whole sweep", "contestants", strings.Join(names, ", "), "cases", len(cases))
	return evals.Run(ctx, evals.Suite{Cases: cases, Metrics: plan.Metrics, Selection: sel}, plan.Contestants, evals.RunOptions{
		CacheDir: s.Path(CacheDir), Seed: r.Train.Seed, Logger: log})
}
