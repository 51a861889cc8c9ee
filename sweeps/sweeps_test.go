package sweeps

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/recipes"
)

// writeRecipe writes a recipe (no model or data is read to plan a sweep).
func writeRecipe(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "r.yaml")
	src := "name: qa\nbase: m.gguf\ndata:\n  train: t.jsonl\neval:\n  metrics: [{name: token_f1}, {name: rouge_l}]\n" + extra
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func plan(t *testing.T, path string, o PlanOptions) (*Spec, error) {
	t.Helper()
	r, err := recipes.Load(path, o.Overrides)
	if err != nil {
		return nil, err
	}
	return Plan(r, o)
}

// TestPlanGrid: the recipe's axes (sorted by key) then --grid's, a --grid
// axis replacing the recipe's of that key; the last axis varies fastest;
// a value the recipe refuses makes that trial Invalid, not the sweep.
func TestPlanGrid(t *testing.T) {
	p := writeRecipe(t, "sweep:\n  grid:\n    train.learning_rate: [1e-3]\n    lora.rank: [4, 8]\n")
	spec, err := plan(t, p, PlanOptions{Grid: []string{"train.learning_rate=1e-3, 3e-3", "train.seed=1,2"}})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, a := range spec.Axes {
		keys = append(keys, a.Key)
	}
	if !slices.Equal(keys, []string{"lora.rank", "train.learning_rate", "train.seed"}) || spec.Combinations != 8 || len(spec.Trials) != 8 {
		t.Fatalf("axes %v, %d combinations, %d trials", keys, spec.Combinations, len(spec.Trials))
	}
	want := [][]string{
		{"lora.rank=4", "train.learning_rate=1e-3", "train.seed=1"},
		{"lora.rank=4", "train.learning_rate=1e-3", "train.seed=2"},
		{"lora.rank=4", "train.learning_rate=3e-3", "train.seed=1"},
	}
	for i, w := range want {
		if !slices.Equal(spec.Trials[i].Sets, w) || spec.Trials[i].Index != i || spec.Trials[i].Invalid != "" {
			t.Fatalf("trial %d: %+v, want %v", i, spec.Trials[i], w)
		}
	}
	if last := spec.Trials[7].Sets; !slices.Equal(last, []string{"lora.rank=8", "train.learning_rate=3e-3", "train.seed=2"}) {
		t.Fatalf("last trial %v", last)
	}
	if spec.Executor != "local" || spec.MaxParallel != 1 || spec.Metric != (Metric{"tuned", "token_f1"}) {
		t.Fatalf("defaults: %s %d %v", spec.Executor, spec.MaxParallel, spec.Metric)
	}

	spec, err = plan(t, p, PlanOptions{Grid: []string{"lora.rank=0,4"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spec.Trials[0].Invalid, "lora.rank") || spec.Trials[1].Invalid != "" {
		t.Fatalf("rank 0 should be an invalid trial alone: %+v", spec.Trials)
	}
}

// TestPlanSample: --trials N is a seeded sample: N distinct combinations
// in grid order, the same for the same seed, others for other seeds.
func TestPlanSample(t *testing.T) {
	p := writeRecipe(t, "sweep:\n  grid:\n    lora.rank: [1, 2, 3, 4]\n    train.seed: [1, 2, 3, 4]\n  trials: 5\n")
	labels := func(s *Spec) []string {
		var out []string
		for _, tr := range s.Trials {
			out = append(out, tr.Label())
		}
		return out
	}
	a, err := plan(t, p, PlanOptions{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := plan(t, p, PlanOptions{Seed: 7})
	if len(a.Trials) != 5 || a.Sample != 5 || a.Combinations != 16 || !slices.Equal(labels(a), labels(b)) {
		t.Fatalf("sample: %v vs %v", labels(a), labels(b))
	}
	full, _ := plan(t, p, PlanOptions{Trials: 16})
	for _, l := range labels(a) {
		if !slices.Contains(labels(full), l) {
			t.Fatalf("%q is not a combination of the grid", l)
		}
	}
	if !slices.IsSortedFunc(a.Trials, func(x, y Trial) int {
		return slices.Index(labels(full), x.Label()) - slices.Index(labels(full), y.Label())
	}) {
		t.Fatalf("the sample is not in grid order: %v", labels(a))
	}
	differs := false
	for seed := uint64(1); seed < 6; seed++ {
		c, _ := plan(t, p, PlanOptions{Seed: seed})
		differs = differs || !slices.Equal(labels(c), labels(a))
	}
	if !differs {
		t.Fatal("every seed gives the same sample")
	}
}

// TestPlanErrors: bad input names the flag or key and what to do.
func TestPlanErrors(t *testing.T) {
	p := writeRecipe(t, "")
	for _, c := range []struct {
		o    PlanOptions
		want []string
	}{
		{PlanOptions{}, []string{"nothing to sweep", "--grid"}},
		{PlanOptions{Grid: []string{"lora.rank"}}, []string{"--grid", "key.path=value1,value2"}},
		{PlanOptions{Grid: []string{"lora.rnak=1,2"}}, []string{"--grid", `did you mean "rank"`}},
		{PlanOptions{Grid: []string{"lora=1,2"}}, []string{"lora is a section"}},
		{PlanOptions{Grid: []string{"lora.rank=4,4"}}, []string{`"4" is listed twice`}},
		{PlanOptions{Grid: []string{"name=a,b"}}, []string{"cannot vary"}},
		{PlanOptions{Grid: []string{"lora.rank=4,8"}, Metric: "bleu"}, []string{"--metric", "token_f1, rouge_l"}},
		{PlanOptions{Grid: []string{"lora.rank=4,8"}, Executor: "k8s"}, []string{"--executor", "local or slurm"}},
	} {
		_, err := plan(t, p, c.o)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to say %q", c.o, err, w)
			}
		}
	}
	for _, c := range []struct{ sweep, want string }{
		{"sweep:\n  grid:\n    lora.rnak: [1]\n", `r.yaml:9: sweep.grid.lora.rnak: lora.rnak: unknown key "rnak"`},
		{"sweep:\n  executor: k8s\n", "sweep.executor: \"k8s\": use local or slurm"},
		{"sweep:\n  slurm:\n    mem: 4 GB\n", "sweep.slurm.mem: \"4 GB\": write a size as sbatch --mem takes it"},
		{"sweep:\n  slurm:\n    gpus: 1\n    gres: gpu:a100:1\n", "give gpus or gres, not both"},
		{"sweep:\n  slurm:\n    time: 10s\n", "at least 1m"},
		{"sweep:\n  slurm:\n    sbatch: [qos=long]\n", "is not an sbatch option"},
		{"sweep:\n  metric: nobody.rouge_l\n", `no contestant "nobody"`},
	} {
		_, err := recipes.Load(writeRecipe(t, c.sweep), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.sweep, err, c.want)
		}
	}
}

func TestCompactList(t *testing.T) {
	for _, c := range []struct {
		in   []int
		want string
	}{{[]int{0, 1, 2, 3}, "0-3"}, {[]int{1}, "1"}, {[]int{0, 2, 3, 4, 7, 9, 10}, "0,2-4,7,9-10"}} {
		if got := compactList(c.in); got != c.want {
			t.Errorf("compactList(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestStatusAndResume: the states come from the trials' files and the
// submissions: done and failed as recorded, running with a dead process
// is failed (killed), submitted and never started is failed, never
// submitted is pending, an invalid trial is failed. Resume submits again
// exactly the failed and unsubmitted trials, the invalid one excepted.
func TestStatusAndResume(t *testing.T) {
	p := writeRecipe(t, "")
	spec, err := plan(t, p, PlanOptions{Grid: []string{"lora.rank=1,2,3,4,5,0"}})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := Create(spec, filepath.Join(t.TempDir(), "sw"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	now := time.Now().UTC()
	dead := deadPID(t)
	// Trials 0-3 were submitted by a local runner that has ended; 4 never
	// was; 5 (rank 0) does not check.
	if err := sw.addJob(Job{Executor: "local", Host: host, PID: dead, Trials: []int{0, 1, 2, 3}, Submitted: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	sw.writeStatus(Status{Index: 0, State: Done, Attempt: 1, Host: host, PID: dead, Started: now, Ended: now})
	sw.writeStatus(Status{Index: 1, State: Failed, Error: "out of memory", Attempt: 1, Host: host, PID: dead, Started: now, Ended: now})
	sw.writeStatus(Status{Index: 2, State: Running, Attempt: 1, Host: host, PID: dead, Started: now})
	ts, warn := sw.Status(context.Background())
	if warn != nil {
		t.Fatal(warn)
	}
	want := []struct{ state, err string }{
		{Done, ""}, {Failed, "out of memory"}, {Failed, "ended without recording"}, {Failed, "runner ended first"}, {Pending, "not submitted"}, {Failed, "lora.rank"},
	}
	for i, w := range want {
		if ts[i].State != w.state || !strings.Contains(ts[i].Error, w.err) || w.err == "" && ts[i].Error != "" {
			t.Errorf("trial %d: %s %q, want %s %q", i, ts[i].State, ts[i].Error, w.state, w.err)
		}
	}
	// A runner that is alive: its trials without a state wait for a slot.
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
	sw.addJob(Job{Executor: "local", Host: host, PID: live.Process.Pid, Trials: []int{3}, Submitted: now})
	if ts, _ = sw.Status(context.Background()); ts[3].State != Pending || !strings.Contains(ts[3].Error, "slot") {
		t.Fatalf("trial 3 under a live runner: %s %q", ts[3].State, ts[3].Error)
	}
	live.Process.Kill()
	live.Wait()

	// Resume runs 1, 2, 3 and 4 again (here with a task that records
	// nothing), not the done trial 0 nor the invalid 5.
	redo, sub, err := sw.Resume(context.Background(), SubmitOptions{Task: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(redo, []int{1, 2, 3, 4}) || !slices.Equal(sub.Job.Trials, redo) {
		t.Fatalf("resume submitted %v", redo)
	}
	jobs, _ := sw.Jobs()
	if len(jobs) != 3 || jobs[2].PID != os.Getpid() {
		t.Fatalf("jobs.json: %+v", jobs)
	}
	for _, i := range redo {
		if _, err := os.Stat(sw.Path(LogsDir, "local-00"+string(rune('0'+i))+".log")); err != nil {
			t.Errorf("trial %d was not run: %v", i, err)
		}
	}
	// A second submitter is told who holds the sweep.
	unlock, err := sw.lock(LockFile, "finetune sweep resume", false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := sw.Submit(context.Background(), []int{1}, SubmitOptions{Task: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "in use by finetune sweep resume") {
		t.Fatalf("a second submission: %v", err)
	}
}

// writeResults writes a trial's eval results as evals does: base, tuned
// and api, tuned scoring score on rouge_l.
func writeResults(t *testing.T, sw *Sweep, i int, score float64) {
	t.Helper()
	s := func(v float64) map[string]evals.Score {
		return map[string]evals.Score{"rouge_l": {Value: v, Low: v - 0.1, High: v + 0.1, N: 9, Asked: 9}}
	}
	res := evals.Results{Base: "base", Metrics: []evals.MetricInfo{{Name: "rouge_l", Columns: []string{"rouge_l"}}},
		Contestants: []evals.ContestantResult{
			{Name: "base", Status: "ok", Scores: s(0.1)},
			{Name: "tuned", Status: "ok", Scores: s(score)},
			{Name: "api", Info: evals.Info{Kind: "openai", Model: "m"}, Status: "ok", Scores: s(0.5), Cost: 0.02, Spent: 0},
		},
		Comparisons: []evals.Comparison{
			{Contestant: "tuned", Against: "base", Column: "rouge_l", Diff: score - 0.1, Low: score - 0.15, High: score - 0.05, N: 9, Asked: 9},
			{Contestant: "api", Against: "base", Column: "rouge_l", Diff: 0.4, Low: 0.3, High: 0.5, N: 9, Asked: 9},
			// evals compares the later contestant with the earlier.
			{Contestant: "api", Against: "tuned", Column: "rouge_l", Diff: 0.5 - score, Low: 0.5 - score - 0.05, High: 0.5 - score + 0.05, N: 9, Asked: 9, Wins: 7, Losses: 1},
		}}
	b, _ := json.Marshal(res)
	dir := filepath.Join(sw.TrialDir(i), "eval")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderboard: done trials ranked by the metric, higher first; the
// difference from the API contestant turned to tuned minus api; failed
// trials last with their error; markdown and HTML say it all.
func TestLeaderboard(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(p, []byte(`name: qa
base: m.gguf
data: {train: t.jsonl}
eval:
  contestants: [{name: base}, {name: tuned, adapter: tuned}, {name: api, kind: openai, model: m, base_url: "http://x/v1"}]
  metrics: [{name: rouge_l}]
`), 0o644)
	spec, err := plan(t, p, PlanOptions{Grid: []string{"lora.rank=1,2,3,4"}})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := Create(spec, filepath.Join(t.TempDir(), "sw"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i, score := range []float64{0.3, 0.6, 0.45} {
		sw.writeStatus(Status{Index: i, State: Done, Attempt: 1, Threads: 2, TrainSeconds: 1800, EvalSeconds: 1800, Started: now, Ended: now})
		writeResults(t, sw, i, score)
	}
	sw.writeStatus(Status{Index: 3, State: Failed, Error: "lora: out of memory", Attempt: 1, Started: now, Ended: now})
	lb, err := sw.WriteLeaderboard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	for _, r := range lb.Trials {
		order = append(order, r.Index)
	}
	if !slices.Equal(order, []int{1, 2, 0, 3}) || lb.Best == nil || *lb.Best != 1 || lb.Trials[3].Rank != 0 || lb.Trials[0].Rank != 1 {
		t.Fatalf("order %v best %v", order, lb.Best)
	}
	best := lb.Trials[0]
	if v := best.Versus; len(v) != 1 || v[0].Contestant != "tuned" || v[0].Against != "api" || v[0].Wins != 1 || v[0].Losses != 7 ||
		v[0].Diff < 0.0999 || v[0].Diff > 0.1001 || v[0].Low > v[0].High {
		t.Fatalf("tuned vs api: %+v", best.Versus[0])
	}
	if best.CoreHours != 2 {
		t.Fatalf("core-hours %v, want (1800+1800)s × 2 threads = 2", best.CoreHours)
	}
	if run, err := lb.BestRun(); err != nil || run != sw.TrialDir(1) {
		t.Fatalf("best run %q %v", run, err)
	}
	md, _ := os.ReadFile(sw.Path(LeaderboardMD))
	html, _ := os.ReadFile(sw.Path(LeaderboardHTML))
	for _, w := range []string{"| 1 | 001 | 2 | done | 0.600 [0.500, 0.700]<br>+0.500 [+0.450, +0.550] * | +0.100 [+0.050, +0.150] * |",
		"Best: trial 001 (lora.rank=2)", "| api | openai | m | ok | 0.500 [0.400, 0.600] | $0.02 |", "## Failed trials", "lora: out of memory"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("leaderboard.md lacks %q:\n%s", w, md)
		}
	}
	// Every row of every table has as many cells as its header.
	for _, table := range strings.Split(string(md), "\n\n") {
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if !strings.HasPrefix(lines[0], "|") {
			continue
		}
		for _, l := range lines[1:] {
			if n, want := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|"), strings.Count(lines[0], "|"); n != want {
				t.Errorf("a row of %d cells under a header of %d:\n%s\n%s", n-1, want-1, lines[0], l)
			}
		}
	}
	if !strings.Contains(string(html), `<tr class="best" data-trial="1" data-state="done">`) || strings.Count(string(html), "data-trial=") != 4 || !strings.Contains(string(html), "lora: out of memory") {
		t.Errorf("leaderboard.html:\n%s", html)
	}
}

// fakeSqueue puts an squeue on PATH that prints out for every job asked.
func fakeSqueue(t *testing.T, out string) {
	dir := t.TempDir()
	body := "#!/bin/sh\ncat <<'EOF'\n" + out + "EOF\n"
	if err := os.WriteFile(filepath.Join(dir, "squeue"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestStatusTrustsTheTrial: a trial whose state file records how it
// ended is done or failed whatever squeue says of its task (completing
// while slurmd is down, still running while a cancelled task drains), a
// completing task is not running, and the leaderboard ranks the done
// trials.
func TestStatusTrustsTheTrial(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(p, []byte(`name: qa
base: m.gguf
data: {train: t.jsonl}
eval:
  contestants: [{name: base}, {name: tuned, adapter: tuned}, {name: api, kind: openai, model: m, base_url: "http://x/v1"}]
  metrics: [{name: rouge_l}]
`), 0o644)
	spec, err := plan(t, p, PlanOptions{Grid: []string{"lora.rank=1,2,3,4,5"}})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := Create(spec, filepath.Join(t.TempDir(), "sw"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := sw.addJob(Job{Executor: "slurm", ID: "77", Trials: []int{0, 1, 2, 3, 4}, Submitted: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	fakeSqueue(t, "77_0|COMPLETING|None\n77_1|RUNNING|None\n77_2|COMPLETING|None\n77_3|RUNNING|None\n77_4|CG|None\n")
	sw.writeStatus(Status{Index: 0, State: Done, Attempt: 1, Job: "77_0", Started: now, Ended: now})
	sw.writeStatus(Status{Index: 1, State: Failed, Error: "interrupted", Attempt: 1, Job: "77_1", Started: now, Ended: now})
	sw.writeStatus(Status{Index: 2, State: Running, Attempt: 1, Job: "77_2", Started: now})
	sw.writeStatus(Status{Index: 3, State: Running, Attempt: 1, Job: "77_3", Started: now})
	sw.writeStatus(Status{Index: 4, State: Done, Attempt: 1, Job: "77_4", Started: now, Ended: now})
	writeResults(t, sw, 0, 0.4)
	writeResults(t, sw, 4, 0.5)
	ts, warn := sw.Status(context.Background())
	if warn != nil {
		t.Fatal(warn)
	}
	want := []struct{ state, err string }{
		{Done, ""}, {Failed, "interrupted"}, {Failed, "ended without recording"}, {Running, ""}, {Done, ""},
	}
	for i, w := range want {
		if ts[i].State != w.state || !strings.Contains(ts[i].Error, w.err) {
			t.Errorf("trial %d: %s %q (squeue %q), want %s %q", i, ts[i].State, ts[i].Error, ts[i].Scheduler, w.state, w.err)
		}
	}
	lb, err := sw.WriteLeaderboard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lb.Best == nil || *lb.Best != 4 {
		t.Fatalf("the leaderboard's best is %v, want trial 4", lb.Best)
	}
	md, _ := os.ReadFile(sw.Path(LeaderboardMD))
	if strings.Contains(string(md), "No trial is done yet") {
		t.Fatalf("leaderboard.md:\n%s", md)
	}
}
