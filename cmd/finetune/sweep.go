package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/sweeps"
)

// sweepContext ends on Ctrl-C and on SIGTERM (what scancel and the local
// executor's cancel send): training then writes a checkpoint.
func sweepContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// taskCommand is how an executor runs one trial: this binary's `sweep
// task`.
func taskCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find the finetune binary to run the trials with: %w", err)
	}
	return []string{exe, "sweep", "task"}, nil
}

func runSweep(args []string) error {
	fs := newFlags("sweep")
	var grid, sets listFlag
	fs.Var(&grid, "grid", "an axis of the grid: key.path=value1,value2,... with the key paths of --set (repeatable; replaces the recipe's sweep.grid axis of that key)")
	fs.Var(&sets, "set", "override a recipe field for every trial, e.g. --set train.max_steps=200 (repeatable)")
	trials := fs.Int("trials", 0, "run a seeded random sample of N combinations of the grid (default: the recipe's sweep.trials, else every combination)")
	seed := fs.Uint64("seed", 0, "seed of the --trials sample (default: the recipe's sweep.seed, else train.seed)")
	executor := fs.String("executor", "", "local or slurm (default: the recipe's sweep.executor, else local)")
	maxPar := fs.Int("max-parallel", 0, "trials at once: local divides the cores among them, slurm submits --array=…%K (default: the recipe's sweep.max_parallel, else 1)")
	metric := fs.String("metric", "", "rank the trials by this score column, of the tuned contestant (rouge_l) or another (tuned.rouge_l) (default: the recipe's sweep.metric, else the suite's first metric)")
	out := fs.String("out", "", "sweep folder to make (default sweeps/<name>/<timestamp>); it must not exist or be empty")
	wait := fs.Bool("wait", false, "slurm: wait until every trial has ended, then print the leaderboard (local always waits)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("sweep takes one recipe file, got %d arguments", len(pos))
	}
	if *trials < 0 || *maxPar < 0 {
		return usageErr("--trials and --max-parallel must not be negative")
	}
	r, err := recipes.Load(pos[0], sets)
	if err != nil {
		return err
	}
	spec, err := sweeps.Plan(r, sweeps.PlanOptions{Overrides: sets, Grid: grid, Trials: *trials, Seed: *seed, Executor: *executor, MaxParallel: *maxPar, Metric: *metric})
	if err != nil {
		return err
	}
	task, err := taskCommand()
	if err != nil {
		return err
	}
	logger := slog.New(log.Default())
	sw, err := sweeps.Create(spec, *out, "sweeps", logger)
	if err != nil {
		return err
	}
	fmt.Println(displayPath(sw.Dir))
	logger.Info("sweep", "dir", displayPath(sw.Dir), "trials", len(spec.Trials), "combinations", spec.Combinations, "executor", spec.Executor, "at_once", spec.MaxParallel, "metric", spec.Metric)
	cx, stop := sweepContext()
	defer stop()
	loadBackends()
	warnSIMD()
	if err := answerShared(cx, sw, logger); err != nil {
		return err
	}
	var run []int
	for _, t := range spec.Trials {
		if t.Invalid == "" {
			run = append(run, t.Index)
		}
	}
	if len(run) == 0 {
		return fmt.Errorf("no trial of the sweep has a recipe that checks (the first: %s)", spec.Trials[0].Invalid)
	}
	start := time.Now()
	if _, err := sw.Submit(cx, run, sweeps.SubmitOptions{Task: task, Logger: logger}); err != nil {
		return err
	}
	if spec.Executor == "slurm" && !*wait {
		fmt.Fprintf(os.Stderr, "submitted; follow it with: finetune sweep status %s\n", displayPath(sw.Dir))
		return nil
	}
	return finishSweep(cx, sw, start, logger)
}

// answerShared asks the API contestants once for every trial (from the
// cache when they have answered already).
func answerShared(cx context.Context, sw *sweeps.Sweep, logger *slog.Logger) error {
	res, err := sw.AnswerShared(cx, sweeps.TrialOptions{Logger: logger})
	if err != nil {
		return fmt.Errorf("asking the API contestants for the sweep: %w; fix that and run the trials with `finetune sweep resume %s`", err, displayPath(sw.Dir))
	}
	if res != nil {
		for _, c := range res.Contestants {
			logger.Info("API contestant answered for every trial", "contestant", c.Name, "status", c.Status, "answered", c.Answered, "cached", c.Cached, "cost_usd", fmt.Sprintf("%.4f", c.Cost))
		}
	}
	return nil
}

// finishSweep waits for the sweep's trials to end (polling the scheduler),
// writes the leaderboard and prints it; an error when a trial failed.
func finishSweep(cx context.Context, sw *sweeps.Sweep, start time.Time, logger *slog.Logger) error {
	for {
		ts, warn := sw.Status(cx)
		if warn != nil {
			logger.Warn("status", "err", warn)
		}
		busy := 0
		for _, t := range ts {
			if t.State == sweeps.Running || t.State == sweeps.Pending && t.Error != "not submitted" {
				busy++
			}
		}
		if busy == 0 {
			break
		}
		select {
		case <-cx.Done():
			return cx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	lb, err := sw.WriteLeaderboard(cx)
	if err != nil {
		return err
	}
	printLeaderboard(os.Stdout, lb)
	logger.Info("sweep ended", "wall", time.Since(start).Round(100*time.Millisecond).String(), "leaderboard", displayPath(sw.Path(sweeps.LeaderboardHTML)))
	if n := lb.Counts[sweeps.Failed]; n > 0 {
		return fmt.Errorf("%d of %d trials failed (their errors are in %s): fix and run them again with `finetune sweep resume %s`",
			n, len(lb.Trials), displayPath(sw.Path(sweeps.LeaderboardMD)), displayPath(sw.Dir))
	}
	return nil
}

// printLeaderboard writes the ranked trials as a text table.
func printLeaderboard(w io.Writer, lb *sweeps.Leaderboard) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "rank\ttrial\tsettings\tstate\t%s\tvs base\ttrain s\teval s\tnote\n", lb.Metric)
	for _, r := range lb.Trials {
		rank, score, diff := "-", "-", "-"
		if r.Rank > 0 {
			rank = strconv.Itoa(r.Rank)
		}
		if s, ok := r.Scores[lb.Metric.Column]; ok && s.N > 0 {
			score = fmt.Sprintf("%.3f [%.3f, %.3f]", s.Value, s.Low, s.High)
		}
		if c := r.VsBase[lb.Metric.Column]; c != nil && c.N > 0 {
			diff = fmt.Sprintf("%+.3f [%+.3f, %+.3f]", c.Diff, c.Low, c.High)
			if c.Significant() {
				diff += " *"
			}
		}
		note := r.Error
		if r.ResumedFrom > 0 {
			note = strings.TrimSpace(fmt.Sprintf("resumed from step %d %s", r.ResumedFrom, note))
		}
		fmt.Fprintf(tw, "%s\t%03d\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\n", rank, r.Index, strings.Join(r.Settings, " "), r.State, score, diff, r.TrainSeconds, r.EvalSeconds, oneLineClip(note, 100))
	}
	tw.Flush()
	if lb.Best != nil {
		fmt.Fprintf(w, "\nbest: trial %03d; leaderboard: %s\n", *lb.Best, displayPath(lb.Dir+"/"+sweeps.LeaderboardHTML))
	} else {
		fmt.Fprintf(w, "\nno trial is done; leaderboard: %s\n", displayPath(lb.Dir+"/"+sweeps.LeaderboardHTML))
	}
}

func oneLineClip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func openSweep(fs string, args []string, pos []string) (*sweeps.Sweep, error) {
	if len(pos) != 1 {
		return nil, usageErr("%s takes one sweep folder, got %d arguments", fs, len(pos))
	}
	return sweeps.Open(pos[0])
}

func runSweepStatus(args []string) error {
	fs := newFlags("sweep status")
	asJSON := fs.Bool("json", false, "print the leaderboard as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	sw, err := openSweep("sweep status", args, pos)
	if err != nil {
		return err
	}
	cx, stop := sweepContext()
	defer stop()
	lb, err := sw.WriteLeaderboard(cx)
	if err != nil {
		return err
	}
	if lb.Warning != "" {
		log.Warn(lb.Warning)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(lb, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	printLeaderboard(os.Stdout, lb)
	if first, wall, ok := sweepTimes(sw); ok {
		fmt.Printf("first trial started %.1fs after the first submission; %s from the first submission to the last trial's end\n", first.Seconds(), wall.Round(100*time.Millisecond))
	}
	return nil
}

// sweepTimes are the time from the first submission to the first trial's
// start, and to the last trial's end (ok once every trial has ended).
func sweepTimes(sw *sweeps.Sweep) (first, wall time.Duration, ok bool) {
	jobs, err := sw.Jobs()
	if err != nil || len(jobs) == 0 {
		return 0, 0, false
	}
	sub := jobs[0].Submitted
	var firstStart, lastEnd time.Time
	for _, t := range sw.Spec.Trials {
		st, _ := sw.ReadStatus(t.Index)
		if st == nil || t.Invalid != "" {
			continue
		}
		if st.Ended.IsZero() {
			return 0, 0, false
		}
		if firstStart.IsZero() || st.Started.Before(firstStart) {
			firstStart = st.Started
		}
		if st.Ended.After(lastEnd) {
			lastEnd = st.Ended
		}
	}
	if firstStart.IsZero() {
		return 0, 0, false
	}
	return firstStart.Sub(sub), lastEnd.Sub(sub), true
}

func runSweepResume(args []string) error {
	fs := newFlags("sweep resume")
	wait := fs.Bool("wait", false, "slurm: wait until the resubmitted trials have ended, then print the leaderboard")
	acceptData := fs.Bool("accept-changed-data", false, "resume trials although the data files changed since they started (recorded in each trial's run.json)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	sw, err := openSweep("sweep resume", args, pos)
	if err != nil {
		return err
	}
	task, err := taskCommand()
	if err != nil {
		return err
	}
	if *acceptData {
		task = append(task, "--accept-changed-data")
	}
	logger := slog.New(log.Default())
	cx, stop := sweepContext()
	defer stop()
	loadBackends()
	if err := answerShared(cx, sw, logger); err != nil {
		return err
	}
	start := time.Now()
	redo, _, err := sw.Resume(cx, sweeps.SubmitOptions{Task: task, Logger: logger})
	if err != nil {
		return err
	}
	if len(redo) == 0 {
		fmt.Println("nothing to resume: every trial is done, running or queued")
		return nil
	}
	logger.Info("resubmitted", "trials", fmt.Sprint(redo))
	if sw.Spec.Executor == "slurm" && !*wait {
		fmt.Printf("resubmitted trials %v; follow them with: finetune sweep status %s\n", redo, displayPath(sw.Dir))
		return nil
	}
	return finishSweep(cx, sw, start, logger)
}

func runSweepCancel(args []string) error {
	fs := newFlags("sweep cancel")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	sw, err := openSweep("sweep cancel", args, pos)
	if err != nil {
		return err
	}
	stopped, err := sw.Cancel(context.Background())
	if err != nil {
		return err
	}
	if len(stopped) == 0 {
		fmt.Println("nothing to cancel: no trial of the sweep is queued or running")
		return nil
	}
	fmt.Printf("cancelled %s; running trials write a checkpoint and record themselves failed: `finetune sweep resume %s` continues them\n",
		strings.Join(stopped, ", "), displayPath(sw.Dir))
	return nil
}

func runSweepTask(args []string) error {
	fs := newFlags("sweep task")
	threads := fs.Int("threads", 0, "threads for training and the local contestants when the recipe leaves train.threads out")
	acceptData := fs.Bool("accept-changed-data", false, "resume the trial's run although the data files changed since it started (recorded in its run.json)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("sweep task takes a sweep folder and a trial index, got %d arguments", len(pos))
	}
	i, err := strconv.Atoi(pos[1])
	if err != nil {
		return usageErr("sweep task: %q is not a trial index", pos[1])
	}
	sw, err := sweeps.Open(pos[0])
	if err != nil {
		return err
	}
	if _, err := sw.Trial(i); err != nil {
		return err
	}
	cx, stop := sweepContext()
	defer stop()
	loadBackends()
	warnSIMD()
	return sw.RunTrial(cx, i, sweeps.TrialOptions{Threads: *threads, Logger: slog.New(log.Default()), AcceptChangedData: *acceptData})
}
