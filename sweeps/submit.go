package sweeps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
)

// SubmitOptions of Submit and Resume.
type SubmitOptions struct {
	// Task is the command line that runs one trial, to which Submit
	// appends the sweep folder, the trial's index and --threads N:
	// [finetune, sweep, task] for the finetune binary.
	Task   []string
	Logger *slog.Logger
	// Cores the local executor divides among its parallel trials
	// (default: every core of the machine).
	Cores int
}

// Submission is what Submit started.
type Submission struct {
	Job Job
	// Latency is, for Slurm, from sbatch to the first trial's task
	// starting when Submit waited for it; for local, 0.
	Latency time.Duration
}

// Submit runs trials (indexes into the spec) with the sweep's executor.
// Slurm: one array job, --array=LIST%K, each task one trial, resources
// from the recipe's sweep.slurm; it returns once sbatch has queued it.
// Local: the trials as child processes, at most K at once, each with
// cores/K threads; it returns when all have ended (or ctx is cancelled:
// the children are sent SIGTERM, write a checkpoint and record
// themselves failed). A trial's failure is in its state file, not in the
// error, which is for a submission that could not be made.
func (s *Sweep) Submit(ctx context.Context, trials []int, o SubmitOptions) (*Submission, error) {
	if len(trials) == 0 {
		return nil, errors.New("no trial to run")
	}
	if len(o.Task) == 0 {
		return nil, errors.New("sweeps: SubmitOptions.Task is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	unlock, err := s.lock(LockFile, "finetune sweep ("+s.Spec.Executor+")", false)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Path(LogsDir), 0o755); err != nil {
		unlock()
		return nil, err
	}
	if s.Spec.Executor == "slurm" {
		defer unlock()
		return s.submitSlurm(ctx, trials, o)
	}
	host, _ := os.Hostname()
	job := Job{Executor: "local", Host: host, PID: os.Getpid(), Trials: trials, Submitted: time.Now().UTC()}
	err = s.addJob(job)
	unlock() // status and cancel read jobs.json while the trials run
	if err != nil {
		return nil, err
	}
	return &Submission{Job: job}, s.runLocal(ctx, trials, o)
}

// LocalThreads is the threads each of k parallel local trials gets of
// cores.
func LocalThreads(cores, k int) int { return max(1, cores/max(1, k)) }

func (s *Sweep) runLocal(ctx context.Context, trials []int, o SubmitOptions) error {
	cores := o.Cores
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	k := min(s.Spec.MaxParallel, len(trials))
	threads := LocalThreads(cores, k)
	o.Logger.Info("running the trials locally", "trials", len(trials), "at_once", k, "threads_each", threads)
	slots := make(chan struct{}, k)
	var wg sync.WaitGroup
	for _, i := range trials {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.runChild(ctx, i, threads, o)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// runChild runs one trial as a child process, its output appended to
// logs/local-NNN.log.
func (s *Sweep) runChild(ctx context.Context, i, threads int, o SubmitOptions) {
	name := fmt.Sprintf("%03d", i)
	logf, err := os.OpenFile(s.Path(LogsDir, "local-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		o.Logger.Error("cannot open the trial's log", "trial", i, "err", err)
		return
	}
	defer logf.Close()
	args := append(append([]string(nil), o.Task[1:]...), s.Dir, strconv.Itoa(i), "--threads", strconv.Itoa(threads))
	cmd := exec.CommandContext(ctx, o.Task[0], args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.Dir
	// Cancelled: SIGTERM, so the trial writes a checkpoint and records
	// itself; killed if it has not ended a minute later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	o.Logger.Info("trial started", "trial", i, "log", logf.Name())
	err = cmd.Run()
	st, _ := s.ReadStatus(i)
	switch {
	case st != nil && st.State == Done:
		o.Logger.Info("trial done", "trial", i)
	case st != nil && st.State == Failed:
		o.Logger.Warn("trial failed", "trial", i, "err", st.Error)
	default:
		o.Logger.Warn("trial's process ended", "trial", i, "err", err, "log", logf.Name())
	}
}

// slurmArgs are the sbatch options of the sweep's array job of trials.
func (s *Sweep) slurmArgs(trials []int) []string {
	sl := s.Spec.Slurm
	args := []string{"--parsable",
		"--job-name=finetune-sweep-" + s.Spec.Name,
		fmt.Sprintf("--array=%s%%%d", compactList(trials), max(1, s.Spec.MaxParallel)),
		"--output=" + s.Path(LogsDir, "slurm-%A_%a.out"),
		"--chdir=" + s.Dir,
		"--cpus-per-task=" + strconv.Itoa(s.cpusPerTask()),
		"--export=ALL",
	}
	if sl.Partition != "" {
		args = append(args, "--partition="+sl.Partition)
	}
	if sl.Mem != "" {
		args = append(args, "--mem="+sl.Mem)
	}
	switch {
	case sl.Gres != "":
		args = append(args, "--gres="+sl.Gres)
	case sl.GPUs > 0:
		args = append(args, fmt.Sprintf("--gres=gpu:%d", sl.GPUs))
	}
	if sl.Time > 0 {
		args = append(args, fmt.Sprintf("--time=%d", int(math.Ceil(sl.Time.Minutes()))))
	}
	return append(args, sl.Sbatch...)
}

// cpusPerTask is what each Slurm task asks for and trains with.
func (s *Sweep) cpusPerTask() int {
	if n := s.Spec.Slurm.CPUsPerTask; n > 0 {
		return n
	}
	if t, _, err := s.trialRecipe(Trial{Sets: nil}, 0); err == nil && t.Train.Threads > 0 {
		return t.Train.Threads
	}
	return 1
}

// compactList writes sorted indexes as Slurm's array list: "0-3,5,7-8".
func compactList(xs []int) string {
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		} else {
			parts = append(parts, strconv.Itoa(xs[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (s *Sweep) submitSlurm(ctx context.Context, trials []int, o SubmitOptions) (*Submission, error) {
	if _, err := exec.LookPath("sbatch"); err != nil {
		return nil, errors.New("sbatch not found: the slurm executor needs Slurm's client commands on PATH (and SLURM_CONF when the cluster's slurm.conf is not in /etc/slurm); or use --executor local")
	}
	var q []string
	for _, a := range o.Task {
		q = append(q, shellQuote(a))
	}
	script := fmt.Sprintf(`#!/bin/sh
# Written by finetune sweep: each task of the array job trains and
# evaluates one trial of the sweep in %s.
exec %s %s "$SLURM_ARRAY_TASK_ID" --threads "${SLURM_CPUS_PER_TASK:-%d}"
`, s.Dir, strings.Join(q, " "), shellQuote(s.Dir), s.cpusPerTask())
	if err := atomicfile.Write(s.Path(TaskScript), []byte(script)); err != nil {
		return nil, err
	}
	args := append(s.slurmArgs(trials), s.Path(TaskScript))
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "sbatch", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = s.Dir
	o.Logger.Info("submitting", "command", "sbatch "+strings.Join(args, " "))
	submitted := time.Now().UTC()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("sbatch refused the array job: %s (%v); check the sweep.slurm settings of %s", strings.TrimSpace(stderr.String()), err, s.Spec.Recipe)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(stdout.String()), ";")
	if _, err := strconv.Atoi(id); err != nil {
		return nil, fmt.Errorf("sbatch answered %q, not a job id", stdout.String())
	}
	job := Job{Executor: "slurm", ID: id, Trials: trials, Submitted: submitted}
	if err := s.addJob(job); err != nil {
		// The job runs all the same: say which, so it can be cancelled.
		return nil, fmt.Errorf("submitted Slurm job %s, but recording it failed: %w (scancel %s to stop it)", id, err, id)
	}
	o.Logger.Info("submitted", "job", id, "trials", len(trials), "at_once", s.Spec.MaxParallel, "logs", s.Path(LogsDir))
	return &Submission{Job: job}, nil
}

// Resume submits again the trials that failed or never ran (pending ones
// that no submission holds); running and queued trials are left alone,
// and a trial whose recipe does not check is not run again. A trial
// killed during training continues from its checkpoint. It returns the
// trials submitted.
func (s *Sweep) Resume(ctx context.Context, o SubmitOptions) ([]int, *Submission, error) {
	trials, warn := s.Status(ctx)
	if warn != nil {
		return nil, nil, fmt.Errorf("%v: resume needs to know which trials still run", warn)
	}
	var redo []int
	for _, t := range trials {
		switch {
		case t.Invalid != "":
			if o.Logger != nil {
				o.Logger.Warn("not resubmitted: the trial's recipe does not check", "trial", t.Index, "err", t.Invalid)
			}
		case t.State == Failed || t.State == Pending && t.Error == "not submitted":
			redo = append(redo, t.Index)
		}
	}
	if len(redo) == 0 {
		return nil, nil, nil
	}
	sub, err := s.Submit(ctx, redo, o)
	return redo, sub, err
}

// Cancel stops the sweep: scancel of its Slurm jobs, SIGTERM to its local
// runner (whose trials then write a checkpoint). It returns what it
// stopped.
func (s *Sweep) Cancel(ctx context.Context) ([]string, error) {
	jobs, err := s.Jobs()
	if err != nil {
		return nil, err
	}
	var stopped []string
	var ids []string
	for _, j := range jobs {
		switch j.Executor {
		case "slurm":
			ids = append(ids, j.ID)
		case "local":
			if h, _ := os.Hostname(); h == j.Host && alive(j.Host, j.PID) {
				if err := syscall.Kill(j.PID, syscall.SIGTERM); err == nil {
					stopped = append(stopped, fmt.Sprintf("local runner pid %d", j.PID))
				}
			}
		}
	}
	if len(ids) > 0 {
		queue, err := squeue(ctx, ids)
		if err != nil {
			return stopped, err
		}
		var live []string
		for _, id := range ids {
			for k := range queue {
				if strings.HasPrefix(k, id+"_") {
					live = append(live, id)
					break
				}
			}
		}
		if len(live) > 0 {
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, "scancel", live...)
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return stopped, fmt.Errorf("scancel %s: %v: %s", strings.Join(live, " "), err, strings.TrimSpace(stderr.String()))
			}
			for _, id := range live {
				stopped = append(stopped, "Slurm job "+id)
			}
		}
	}
	return stopped, nil
}
