package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/sweeps"
)

// requireSlurm skips, saying how to start one, when no Slurm cluster
// answers (scripts/slurm-up.sh starts a single-node one; .ci/run does).
func requireSlurm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Skip("SKIPPED: no sbatch on PATH: start a single-node Slurm with eval \"$(scripts/slurm-up.sh)\" (what .ci/run does)")
	}
	if os.Getenv("SLURM_CONF") == "" {
		if _, err := os.Stat("/etc/slurm/slurm.conf"); err != nil {
			t.Skip("SKIPPED: SLURM_CONF is not set and there is no /etc/slurm/slurm.conf: eval \"$(scripts/slurm-up.sh)\" first")
		}
	}
	if out, err := exec.Command("sinfo", "-h", "-o", "%T").CombinedOutput(); err != nil || !strings.Contains(string(out), "idle") && !strings.Contains(string(out), "mix") && !strings.Contains(string(out), "alloc") {
		t.Skipf("SKIPPED: Slurm does not answer (sinfo: %v %s): eval \"$(scripts/slurm-up.sh)\" first", err, out)
	}
}

// sweepRecipe is qaRecipe with an eval suite of base, tuned and an
// OpenAI-compatible contestant on srv, and sweep settings.
func sweepRecipe(t *testing.T, model string, srv *echoServer, sweep string) string {
	t.Helper()
	t.Setenv("FT_EVAL_TEST_KEY", evalKey)
	return qaRecipe(t, model, `eval:
  contestants:
    - {name: base}
    - {name: tuned, adapter: tuned}
    - {name: api, kind: openai, model: m, base_url: "`+srv.URL+`/ok/v1", api_key_env: FT_EVAL_TEST_KEY}
  metrics: [{name: token_f1}, {name: rouge_l}]
  generation: {max_tokens: 8}
`+sweep)
}

func readLeaderboard(t *testing.T, dir string) *sweeps.Leaderboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, sweeps.LeaderboardJSON))
	if err != nil {
		t.Fatal(err)
	}
	var lb sweeps.Leaderboard
	if err := json.Unmarshal(b, &lb); err != nil {
		t.Fatal(err)
	}
	return &lb
}

func trialStates(t *testing.T, dir string, n int) []sweeps.Status {
	t.Helper()
	sw, err := sweeps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []sweeps.Status
	for i := range n {
		st, err := sw.ReadStatus(i)
		if err != nil || st == nil {
			t.Fatalf("trial %d has no state (%v)", i, err)
		}
		out = append(out, *st)
	}
	return out
}

// mostAtOnce is the largest number of trials whose [Started, Ended]
// overlap.
func mostAtOnce(sts []sweeps.Status) int {
	most := 0
	for _, a := range sts {
		n := 0
		for _, b := range sts {
			if !b.Started.After(a.Started) && b.Ended.After(a.Started) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// TestSweepSlurmAndLocal: a 4-trial grid on stories260K as one Slurm
// array job with %2: every trial done, each by its own array task, never
// more than 2 at once (from the trials' own start and end times), the API
// contestant asked once per case for the whole sweep, the leaderboard
// ranked by the metric. The same sweep with the local executor (2 at
// once, cores divided) gives the same adapters tensor for tensor.
func TestSweepSlurmAndLocal(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	requireSlurm(t)
	srv := newEchoServer(t, nil)
	recipe := sweepRecipe(t, model, srv, `sweep:
  grid:
    lora.rank: [2, 4]
    train.learning_rate: [1e-2, 3e-3]
  max_parallel: 2
  metric: rouge_l
`)
	dir := filepath.Join(t.TempDir(), "slurm")
	start := time.Now()
	// Evaluated on its training split, so that the trials learn enough to
	// rank apart.
	sets := []string{"--set", "data.eval=train.jsonl", "--set", "train.max_steps=40"}
	r := cli(t, append([]string{"sweep", recipe, "--executor", "slurm", "--out", dir, "--wait"}, sets...)...)
	if r.code != 0 {
		t.Fatalf("sweep on Slurm: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("slurm sweep of 4 trials, 2 at once: %.1fs", time.Since(start).Seconds())
	sts := trialStates(t, dir, 4)
	jobs := map[string]bool{}
	for _, st := range sts {
		if st.State != sweeps.Done || st.Attempt != 1 {
			t.Fatalf("trial %d: %s (attempt %d) %s", st.Index, st.State, st.Attempt, st.Error)
		}
		if st.Job == "" || jobs[st.Job] {
			t.Fatalf("trial %d ran as Slurm task %q: want one array task per trial", st.Index, st.Job)
		}
		jobs[st.Job] = true
		if st.Threads != 1 {
			t.Errorf("trial %d trained with %d threads, want Slurm's 1 cpu per task", st.Index, st.Threads)
		}
	}
	if n := mostAtOnce(sts); n != 2 {
		t.Errorf("%d trials ran at once, want 2 (--array=0-3%%2):\n%+v", n, sts)
	}
	if n := srv.count("ok "); n != 9 {
		t.Errorf("the API contestant was asked %d times for 9 cases and 4 trials: want each case once for the whole sweep", n)
	}
	lb := readLeaderboard(t, dir)
	if lb.Counts[sweeps.Done] != 4 || len(lb.Trials) != 4 || lb.Best == nil {
		t.Fatalf("leaderboard: %+v", lb.Counts)
	}
	for i, row := range lb.Trials {
		if row.Rank != i+1 || row.Scores["rouge_l"].N != 9 || row.VsBase["rouge_l"] == nil || len(row.Versus) != 1 || row.Versus[0].Against != "api" {
			t.Fatalf("leaderboard row %d: %+v", i, row)
		}
		if i > 0 && row.Scores["rouge_l"].Value > lb.Trials[i-1].Scores["rouge_l"].Value {
			t.Fatalf("leaderboard not ranked by rouge_l: %v before %v", lb.Trials[i-1].Scores["rouge_l"], row.Scores["rouge_l"])
		}
		// Each trial's own eval report agrees with its row.
		b, _ := os.ReadFile(filepath.Join(row.Run, "eval", "results.json"))
		var res struct {
			Contestants []struct {
				Name   string
				Scores map[string]struct{ Value float64 }
			}
		}
		json.Unmarshal(b, &res)
		if len(res.Contestants) != 3 || res.Contestants[1].Scores["rouge_l"].Value != row.Scores["rouge_l"].Value {
			t.Fatalf("trial %d's leaderboard score differs from its eval report", row.Index)
		}
	}
	if lb.Trials[0].Scores["rouge_l"].Value <= lb.Trials[3].Scores["rouge_l"].Value {
		t.Errorf("the trials did not rank apart (rouge_l %v ... %v): the test shows too little", lb.Trials[0].Scores["rouge_l"], lb.Trials[3].Scores["rouge_l"])
	}
	if *lb.Best != lb.Trials[0].Index {
		t.Fatalf("best trial %d is not the first ranked (%d)", *lb.Best, lb.Trials[0].Index)
	}
	md, _ := os.ReadFile(filepath.Join(dir, sweeps.LeaderboardMD))
	html, _ := os.ReadFile(filepath.Join(dir, sweeps.LeaderboardHTML))
	if !strings.Contains(string(md), "| lora.rank | train.learning_rate |") || !strings.Contains(string(md), "Δ rouge_l vs api") || strings.Count(string(html), "data-trial=") != 4 {
		t.Fatalf("leaderboard.md/html lack the trials:\n%s", md)
	}
	noKey(t, dir)

	// The same sweep, local, 2 at once: the same adapters.
	local := filepath.Join(t.TempDir(), "local")
	start = time.Now()
	if r := cli(t, append([]string{"sweep", recipe, "--executor", "local", "--out", local}, sets...)...); r.code != 0 {
		t.Fatalf("sweep locally: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("local sweep of 4 trials, 2 at once: %.1fs", time.Since(start).Seconds())
	for i, st := range trialStates(t, local, 4) {
		if st.State != sweeps.Done || st.Job != "" {
			t.Fatalf("local trial %d: %s job %q %s", i, st.State, st.Job, st.Error)
		}
		a, err := adapters.Read(filepath.Join(dir, "trials", fmt.Sprintf("%03d", i), "adapter.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := adapters.Read(filepath.Join(local, "trials", fmt.Sprintf("%03d", i), "adapter.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Pairs) != len(b.Pairs) || len(a.Pairs) == 0 {
			t.Fatalf("trial %d: %d and %d tensor pairs", i, len(a.Pairs), len(b.Pairs))
		}
		for p := range a.Pairs {
			if !slices.Equal(a.Pairs[p].A, b.Pairs[p].A) || !slices.Equal(a.Pairs[p].B, b.Pairs[p].B) {
				t.Fatalf("trial %d: %s differs between the Slurm and the local sweep", i, a.Pairs[p].Base)
			}
		}
	}
	if mostAtOnce(trialStates(t, local, 4)) != 2 {
		t.Errorf("the local sweep did not run 2 trials at once")
	}
}

// waitFor polls cond every 100 ms until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSweepSlurmCancelResume: scancel of the one running task of a
// long trial shows it failed in `sweep status`; `sweep resume` submits
// only that trial again, and it continues from its checkpoint (not from
// step 0) to the adapter an uncut run gives.
func TestSweepSlurmCancelResume(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	requireSlurm(t)
	srv := newEchoServer(t, nil)
	recipe := sweepRecipe(t, model, srv, `sweep:
  grid:
    train.max_steps: [600, 6]
  max_parallel: 2
`)
	dir := filepath.Join(t.TempDir(), "sweep")
	if r := cli(t, "sweep", recipe, "--executor", "slurm", "--out", dir, "--set", "train.checkpoint_every=20"); r.code != 0 {
		t.Fatalf("sweep: exit %d\n%s", r.code, r.stderr)
	}
	sw, err := sweeps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	jobs, _ := sw.Jobs()
	if len(jobs) != 1 || jobs[0].Executor != "slurm" || !slices.Equal(jobs[0].Trials, []int{0, 1}) {
		t.Fatalf("jobs.json: %+v", jobs)
	}
	ckpt := filepath.Join(dir, "trials", "000", "checkpoint.gguf")
	waitFor(t, 2*time.Minute, "trial 0's first checkpoint", func() bool { _, err := os.Stat(ckpt); return err == nil })
	if out, err := exec.Command("scancel", jobs[0].ID+"_0").CombinedOutput(); err != nil {
		t.Fatalf("scancel: %v %s", err, out)
	}
	var lb *sweeps.Leaderboard
	waitFor(t, 2*time.Minute, "trial 0 failed and trial 1 done", func() bool {
		r := cli(t, "sweep", "status", dir, "--json")
		if r.code != 0 {
			t.Fatalf("sweep status: %s", r.stderr)
		}
		lb = &sweeps.Leaderboard{}
		json.Unmarshal([]byte(r.stdout), lb)
		return lb.Counts[sweeps.Failed] == 1 && lb.Counts[sweeps.Done] == 1
	})
	var cut sweeps.Row
	for _, row := range lb.Trials {
		if row.Index == 0 {
			cut = row
		}
	}
	if cut.State != sweeps.Failed || cut.Error == "" {
		t.Fatalf("the cancelled trial: %+v", cut)
	}
	st0, _ := sw.ReadStatus(0)
	st1, _ := sw.ReadStatus(1)
	if st0.Steps < 20 || st0.Steps >= 600 || !strings.Contains(st0.Error, "cancelled") {
		t.Fatalf("trial 0 after scancel: %d steps, %q; want stopped between its first checkpoint and step 600, saying so", st0.Steps, st0.Error)
	}
	r := cli(t, "sweep", "resume", dir, "--wait")
	if r.code != 0 {
		t.Fatalf("sweep resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	jobs, _ = sw.Jobs()
	if len(jobs) != 2 || !slices.Equal(jobs[1].Trials, []int{0}) {
		t.Fatalf("resume submitted %+v, want only trial 0", jobs[len(jobs)-1])
	}
	after0, _ := sw.ReadStatus(0)
	after1, _ := sw.ReadStatus(1)
	if after0.State != sweeps.Done || after0.Attempt != 2 || after0.ResumedFrom < 20 || after0.Steps != 600 {
		t.Fatalf("the resumed trial: %+v (want done, attempt 2, resumed from a checkpoint at step >= 20, 600 steps)", after0)
	}
	if *after1 != *st1 {
		t.Fatalf("resume touched trial 1, which was done:\n%+v\n%+v", st1, after1)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "trials", "000", "train.log"))
	if !strings.Contains(string(log), "resuming") {
		t.Fatalf("trial 0's train.log does not say it resumed:\n%s", log)
	}
	// The resumed trial's adapter is the uncut run's.
	full := filepath.Join(t.TempDir(), "full")
	if r := cli(t, "train", recipe, "--out", full, "--set", "train.max_steps=600", "--set", "train.checkpoint_every=20"); r.code != 0 {
		t.Fatalf("uncut run: %s", r.stderr)
	}
	a, err := adapters.Read(filepath.Join(full, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := adapters.Read(filepath.Join(dir, "trials", "000", "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for p := range a.Pairs {
		for j := range a.Pairs[p].A {
			if d := a.Pairs[p].A[j] - b.Pairs[p].A[j]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("the resumed trial's %s lora_a differs from the uncut run's by %g", a.Pairs[p].Base, d)
			}
		}
		for j := range a.Pairs[p].B {
			if d := a.Pairs[p].B[j] - b.Pairs[p].B[j]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("the resumed trial's %s lora_b differs from the uncut run's by %g", a.Pairs[p].Base, d)
			}
		}
	}
}

// TestSweepTrialFailsAlone: a trial whose setting cannot train (windows
// too short for any example) and one whose recipe does not check (rank 0)
// fail with their errors; the other trial is done and ranked, the sweep
// exits 1 saying how many failed, and the leaderboard lists the errors.
func TestSweepTrialFailsAlone(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := newEchoServer(t, nil)
	recipe := sweepRecipe(t, model, srv, "")
	dir := filepath.Join(t.TempDir(), "sweep")
	r := cli(t, "sweep", recipe, "--out", dir, "--grid", "data.seq_len=64,16", "--grid", "lora.rank=4,0", "--max-parallel", "2")
	if r.code != exitFailure || !strings.Contains(r.stderr, "3 of 4 trials failed") {
		t.Fatalf("sweep with impossible settings: exit %d, want 1 and 3 of 4 failed\n%s", r.code, r.stderr)
	}
	lb := readLeaderboard(t, dir)
	if lb.Counts[sweeps.Done] != 1 || lb.Counts[sweeps.Failed] != 3 || lb.Best == nil || *lb.Best != 0 {
		t.Fatalf("leaderboard: %+v best %v", lb.Counts, lb.Best)
	}
	for _, row := range lb.Trials[1:] {
		want := "lora.rank"
		if row.Index == 2 {
			want = "holds no example" // 16-token windows hold none
		}
		if row.State != sweeps.Failed || !strings.Contains(row.Error, want) {
			t.Errorf("trial %d (%v): %s %q, want failed naming %s", row.Index, row.Settings, row.State, row.Error, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "trials", "000", "adapter.gguf")); err != nil {
		t.Fatal("the good trial has no adapter")
	}
	md, _ := os.ReadFile(filepath.Join(dir, sweeps.LeaderboardMD))
	if !strings.Contains(string(md), "## Failed trials") {
		t.Fatalf("leaderboard.md lists no failed trial:\n%s", md)
	}
	// Publishing a sweep needs --best; --best of a run folder is refused.
	wantCleanError(t, cli(t, "publish", dir), "sweep folder", "--best")
	wantCleanError(t, cli(t, "publish", filepath.Join(dir, "trials", "000"), "--best"), "not one")
	// --best picks trial 0; --modelfile-only needs no server.
	if r := cli(t, "publish", dir, "--best", "--modelfile-only"); r.code != 0 || !strings.Contains(r.stdout, filepath.Join(dir, "trials", "000", "Modelfile")) {
		t.Fatalf("publish --best --modelfile-only: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestSweepLocalCancel: `sweep cancel` of a local sweep stops its runner;
// the running trials write a checkpoint and record themselves failed
// (stopped, resumable), the queued one never started, and the runner
// exits 130.
func TestSweepLocalCancel(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	srv := newEchoServer(t, nil)
	recipe := sweepRecipe(t, model, srv, "")
	dir := filepath.Join(t.TempDir(), "sweep")
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "sweep", recipe, "--out", dir, "--grid", "lora.rank=2,3,4", "--max-parallel", "2", "--set", "train.max_steps=3000", "--set", "train.checkpoint_every=20")
	cmd.Env = append(os.Environ(), "FINETUNE_AS_CLI=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, 2*time.Minute, "both running trials' first checkpoints", func() bool {
		_, e0 := os.Stat(filepath.Join(dir, "trials", "000", "checkpoint.gguf"))
		_, e1 := os.Stat(filepath.Join(dir, "trials", "001", "checkpoint.gguf"))
		return e0 == nil && e1 == nil
	})
	if r := cli(t, "sweep", "cancel", dir); r.code != 0 || !strings.Contains(r.stdout, "local runner") {
		t.Fatalf("sweep cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("the cancelled sweep exited %d, want %d:\n%s", code, exitInterrupted, stderr.String())
	}
	r := cli(t, "sweep", "status", dir, "--json")
	var lb sweeps.Leaderboard
	if err := json.Unmarshal([]byte(r.stdout), &lb); err != nil {
		t.Fatalf("sweep status --json: %v\n%s", err, r.stderr)
	}
	for _, row := range lb.Trials {
		want := "stopped"
		if row.Index == 2 {
			want = "never started"
		}
		if row.State != sweeps.Failed || !strings.Contains(row.Error, want) {
			t.Errorf("trial %d: %s %q, want failed, %s", row.Index, row.State, row.Error, want)
		}
	}
}

// TestSweepResumeChangedData: a sweep trial stopped after a checkpoint
// whose training file then grew is refused by `sweep resume`, naming the
// file and the flag that works there (not train's); `sweep resume
// --accept-changed-data` resumes it, and its run.json records the change
// as train's does.
func TestSweepResumeChangedData(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	recipe := qaRecipe(t, model, "eval:\n  generation: {max_tokens: 4}\n")
	dir := filepath.Join(t.TempDir(), "sweep")
	if r := cli(t, "sweep", recipe, "--out", dir, "--grid", "train.max_steps=3"); r.code != 0 {
		t.Fatalf("sweep: exit %d\n%s", r.code, r.stderr)
	}
	// Trial 0 as a cancelled task leaves it: stopped after a checkpoint.
	trial := filepath.Join(dir, "trials", "000")
	editRecord(t, trial, func(m map[string]any) { m["state"] = "interrupted" })
	stopped := func() {
		t.Helper()
		p := filepath.Join(dir, "state", "000.json")
		var st sweeps.Status
		if err := json.Unmarshal(must(os.ReadFile(p)), &st); err != nil {
			t.Fatal(err)
		}
		st.State, st.Error = sweeps.Failed, "stopped (cancelled or interrupted) at step 3 after a checkpoint"
		os.WriteFile(p, must(json.Marshal(st)), 0o644)
	}
	stopped()
	train := filepath.Join(filepath.Dir(recipe), "train.jsonl")
	fh, _ := os.OpenFile(train, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"prompt": "Q: What is 2 and 2?\nA:", "completion": " Four."}` + "\n")
	fh.Close()

	r := cli(t, "sweep", "resume", dir)
	if r.code != exitFailure || !strings.Contains(r.stderr, "1 of 1 trials failed") {
		t.Fatalf("sweep resume on changed data: exit %d, want 1\n%s", r.code, r.stderr)
	}
	st := trialStates(t, dir, 1)[0]
	if st.State != sweeps.Failed || !strings.Contains(st.Error, train+" (train) changed") ||
		!strings.Contains(st.Error, "finetune sweep resume "+dir+" --accept-changed-data") || strings.Contains(st.Error, "finetune train") {
		t.Fatalf("the refused trial: %s %q; want failed, naming the file and `sweep resume --accept-changed-data`", st.State, st.Error)
	}
	stopped()
	r = cli(t, "sweep", "resume", dir, "--accept-changed-data")
	if r.code != 0 {
		t.Fatalf("sweep resume --accept-changed-data: exit %d\n%s", r.code, r.stderr)
	}
	if st := trialStates(t, dir, 1)[0]; st.State != sweeps.Done || st.ResumedFrom != 3 {
		t.Fatalf("the resumed trial: %+v", st)
	}
	b, _ := os.ReadFile(filepath.Join(trial, "run.json"))
	if !strings.Contains(string(b), `"data_changes"`) || !strings.Contains(string(b), "train.jsonl (train) changed") {
		t.Fatalf("the trial's run.json does not record the accepted change:\n%s", b)
	}
	log, _ := os.ReadFile(filepath.Join(trial, "train.log"))
	if !strings.Contains(string(log), "accept-changed-data") {
		t.Fatalf("the trial's train.log does not say it resumed on changed data:\n%s", log)
	}
}
