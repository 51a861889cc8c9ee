package sweeps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
)

// The states of a trial.
const (
	Pending = "pending" // not started: queued, waiting for a slot, or not submitted
	Running = "running"
	Done    = "done"   // trained and evaluated
	Failed  = "failed" // with its error; `finetune sweep resume` runs it again
)

// Status is state/NNN.json: a trial's outcome as the process that ran it
// recorded it.
type Status struct {
	Index   int    `json:"index"`
	State   string `json:"state"` // running, done or failed
	Error   string `json:"error,omitempty"`
	Attempt int    `json:"attempt"` // 1 for the first run, +1 for each resume
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// Job is the Slurm array task that ran the trial ("123_4"), "" when
	// the local executor did.
	Job string `json:"job,omitempty"`
	// ResumedFrom is the optimizer step the trial's training continued
	// from (0: it started from scratch, or had finished).
	ResumedFrom  int       `json:"resumed_from,omitempty"`
	Steps        int       `json:"steps,omitempty"`
	Threads      int       `json:"threads,omitempty"`
	TrainSeconds float64   `json:"train_seconds,omitempty"`
	EvalSeconds  float64   `json:"eval_seconds,omitempty"`
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended,omitzero"`
}

func (s *Sweep) writeStatus(st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.statePath(st.Index), append(b, '\n'))
}

// ReadStatus is trial i's recorded status, nil when it has none yet.
func (s *Sweep) ReadStatus(i int) (*Status, error) {
	b, err := os.ReadFile(s.statePath(i))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %v (damaged: `finetune sweep resume` runs the trial again)", s.statePath(i), err)
	}
	return &st, nil
}

// Job is one submission of trials: a Slurm array job, or a local runner
// process.
type Job struct {
	Executor  string    `json:"executor"`
	ID        string    `json:"id,omitempty"` // Slurm's job id
	Host      string    `json:"host,omitempty"`
	PID       int       `json:"pid,omitempty"` // the local runner
	Trials    []int     `json:"trials"`
	Submitted time.Time `json:"submitted"`
}

// Jobs are jobs.json's submissions, oldest first.
func (s *Sweep) Jobs() ([]Job, error) {
	b, err := os.ReadFile(s.Path(JobsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var jobs []Job
	if err := json.Unmarshal(b, &jobs); err != nil {
		return nil, fmt.Errorf("%s: %v", s.Path(JobsFile), err)
	}
	return jobs, nil
}

// addJob appends a submission to jobs.json; the caller holds LockFile.
func (s *Sweep) addJob(j Job) error {
	jobs, err := s.Jobs()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(append(jobs, j), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.Path(JobsFile), append(b, '\n'))
}

// lock takes the flock of name in the sweep folder: waiting for it, or
// failing at once naming the holder. unlock releases it.
func (s *Sweep) lock(name, what string, wait bool) (unlock func(), err error) {
	f, err := os.OpenFile(s.Path(name), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		holder, _ := os.ReadFile(s.Path(name))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by %s: wait for it to finish", s.Dir, cmpOr(strings.TrimSpace(string(holder)), "another process"))
		}
		return nil, fmt.Errorf("%s: cannot lock %s: %w", s.Dir, name, err)
	}
	host, _ := os.Hostname()
	f.Truncate(0)
	f.WriteAt(fmt.Appendf(nil, "%s (pid %d on %s, since %s)\n", what, os.Getpid(), host, time.Now().Format("2006-01-02 15:04:05")), 0)
	return func() { f.Truncate(0); f.Close() }, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TrialStatus is a trial's state as seen from its state file, the
// submissions and the scheduler.
type TrialStatus struct {
	Trial
	State string `json:"state"`
	// Error says why a failed trial failed; for a pending one, what it
	// waits for.
	Error string `json:"error,omitempty"`
	// Scheduler is Slurm's view of the trial's task ("123_4 RUNNING"),
	// "" when it is not in the queue.
	Scheduler string  `json:"scheduler,omitempty"`
	Status    *Status `json:"status,omitempty"`
	Log       string  `json:"log,omitempty"` // the task's output
}

// queueEntry is one array task in squeue.
type queueEntry struct{ state, reason string }

// squeue lists the array tasks of jobs still in Slurm's queue, by
// "JOBID_INDEX", asking for each job on its own (squeue refuses a list
// whose jobs have all left the queue). An error means Slurm did not
// answer.
func squeue(ctx context.Context, ids []string) (map[string]queueEntry, error) {
	out := map[string]queueEntry{}
	for _, id := range ids {
		cx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(cx, "squeue", "-h", "-r", "-j", id, "-o", "%i|%T|%r")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			if strings.Contains(stderr.String(), "Invalid job id") {
				continue // the job has left the queue
			}
			return nil, fmt.Errorf("squeue: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			f := strings.Split(strings.TrimSpace(line), "|")
			if len(f) == 3 {
				out[f[0]] = queueEntry{f[1], f[2]}
			}
		}
	}
	return out, nil
}

// completing reports whether an squeue state (%T, or %t's short form) is
// Slurm's completing one: the task is ending (its processes may still be
// writing their outcome after Slurm's signal).
func completing(state string) bool { return state == "COMPLETING" || state == "CG" }

// aliveHere reports whether process pid runs on this machine, which is
// host; false when host is another machine (nothing can be told here).
func aliveHere(host string, pid int) bool {
	if h, _ := os.Hostname(); h != host {
		return false
	}
	return alive(host, pid)
}

// alive reports whether process pid runs on this host.
func alive(host string, pid int) bool {
	if pid <= 0 {
		return false
	}
	if h, _ := os.Hostname(); h != host {
		return true // cannot tell from here: believe the state file
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Status is every trial's state: from its state file, the submissions
// and, for Slurm jobs, squeue (a trial whose task left the queue while
// its state file says running was killed: cancelled, out of memory or its
// node lost). warn is set when Slurm did not answer; the states then come
// from the files alone.
func (s *Sweep) Status(ctx context.Context) (trials []TrialStatus, warn error) {
	jobs, err := s.Jobs()
	if err != nil {
		return nil, err
	}
	last := map[int]*Job{} // the newest submission of each trial
	for i := range jobs {
		for _, t := range jobs[i].Trials {
			last[t] = &jobs[i]
		}
	}
	var ids []string // the Slurm jobs that hold some trial's newest submission
	for _, j := range last {
		if j.Executor == "slurm" && !slices.Contains(ids, j.ID) {
			ids = append(ids, j.ID)
		}
	}
	slices.Sort(ids)
	queue, qerr := squeue(ctx, ids)
	if qerr != nil {
		warn = fmt.Errorf("%v: the states below come from the trials' files alone", qerr)
	}
	for _, t := range s.Spec.Trials {
		ts := TrialStatus{Trial: t, State: Pending}
		st, err := s.ReadStatus(t.Index)
		if err != nil {
			ts.State, ts.Error = Failed, err.Error()
			trials = append(trials, ts)
			continue
		}
		ts.Status = st
		j := last[t.Index]
		var q queueEntry
		inQueue := false
		if j != nil && j.Executor == "slurm" {
			key := j.ID + "_" + strconv.Itoa(t.Index)
			q, inQueue = queue[key]
			ts.Log = s.Path(LogsDir, fmt.Sprintf("slurm-%s_%d.out", j.ID, t.Index))
			if inQueue {
				ts.Scheduler = key + " " + q.state
			}
		} else if j != nil {
			ts.Log = s.Path(LogsDir, "local-"+t.Name()+".log")
		}
		submittedAfter := j != nil && (st == nil || j.Submitted.After(st.Started))
		if inQueue && completing(q.state) {
			// The task's processes have ended; Slurm is cleaning up (or
			// cannot reach the node's slurmd to confirm). The state file
			// says how the trial ended.
			inQueue = false
		}
		switch {
		case qerr != nil && j != nil && j.Executor == "slurm" && st == nil:
			ts.State, ts.Error = Pending, "Slurm did not answer"
		case qerr != nil && st != nil:
			ts.State, ts.Error = st.State, st.Error
		case st != nil && !submittedAfter && (st.State == Done || st.State == Failed):
			// The trial's own final state of its newest submission wins
			// over the scheduler's view, which lags behind (a task ending,
			// a cancelled one draining, a node whose slurmd is down).
			ts.State, ts.Error = st.State, st.Error
		case inQueue && q.state == "PENDING":
			ts.State, ts.Error = Pending, "queued ("+q.reason+")"
		case inQueue:
			ts.State = Running
		case st == nil && j == nil:
			ts.State, ts.Error = Pending, "not submitted"
		case j != nil && j.Executor == "local" && alive(j.Host, j.PID) && (st == nil || submittedAfter && st.State != Running):
			ts.State, ts.Error = Pending, "waiting for a free slot"
		case submittedAfter && j.Executor == "local":
			ts.State, ts.Error = Failed, "never started: the sweep's local runner ended first (cancelled?)"
		case submittedAfter:
			ts.State, ts.Error = Failed, "never started: its task left Slurm's queue without running (cancelled?)"
		case st.State == Running && st.Job == "" && alive(st.Host, st.PID):
			ts.State = Running
		case st.State == Running && st.Job != "" && aliveHere(st.Host, st.PID):
			// Its task left the queue (or is completing) but the trial's
			// process still runs here: it is writing its checkpoint and
			// outcome after Slurm's signal.
			ts.State = Running
		case st.State == Running:
			ts.State = Failed
			ts.Error = "the trial's process ended without recording an outcome (killed, out of memory, or its node lost)"
			if ts.Log != "" {
				ts.Error += "; see " + ts.Log
			}
		default:
			ts.State, ts.Error = st.State, st.Error
		}
		trials = append(trials, ts)
	}
	return trials, warn
}
