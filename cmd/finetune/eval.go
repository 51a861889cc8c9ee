package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

func runEval(args []string) error {
	fs := newFlags("eval")
	runDir := fs.String("run", "", "training run folder: its adapter.gguf is the tuned adapter, its loss curve goes in the report")
	adapter := fs.String("adapter", "", "tuned adapter file (instead of --run)")
	out := fs.String("out", "", "report folder (default RUN_DIR/eval, or runs/<name>/eval-<timestamp>)")
	gate := fs.String("fail-under", "", `exit non-zero unless this holds, e.g. "tuned.label_accuracy - base.label_accuracy >= 0.05"`)
	var sets listFlag
	fs.Var(&sets, "set", "override a recipe field (repeatable)")
	device := fs.String("device", "", "where the local contestants run: auto (the first GPU, else the CPU), cpu, cuda[:N] (default: the recipe's train.device)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("eval takes one run folder or recipe file, got %d arguments", len(pos))
	}
	if *runDir != "" && *adapter != "" {
		return usageErr("give --run or --adapter, not both")
	}
	var g *evals.Gate
	if *gate != "" {
		if g, err = evals.ParseGate(*gate); err != nil {
			return usageErr("--fail-under: %v", err)
		}
	}
	var r *recipes.Recipe
	var runSets []string // --set overrides of a run folder's own recipe, for this eval only
	if st, err := os.Stat(pos[0]); err == nil && st.IsDir() {
		if *runDir != "" || *adapter != "" {
			return usageErr("a run folder brings its adapter: leave out --run and --adapter")
		}
		*runDir = pos[0]
		runSets = sets
	} else if r, err = recipes.Load(pos[0], sets); err != nil {
		return err
	}
	var run *runs.Run
	if *runDir != "" {
		if run, err = runs.Open(*runDir); err != nil {
			return err
		}
		defer run.Close()
	}
	loadBackends()
	warnSIMD()
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	prog := &evalProgress{latest: map[string]evals.Progress{}}
	o := runs.EvalOptions{Recipe: r, Adapter: *adapter, Out: *out, Logger: slog.New(log.Default()), Progress: prog.show, Device: *device, Sets: runSets}
	var res *evals.Results
	if run != nil {
		switch {
		case o.Out != "":
		case len(runSets) > 0:
			// An eval with overrides leaves the run's own eval/ as it is;
			// it shares its answer cache (the settings are part of a key).
			o.Out = run.Path("eval-" + time.Now().Format("20060102-150405"))
			o.CacheDir = runs.EvalCacheDir(run.Path(runs.EvalDir))
		default:
			o.Out = run.Path(runs.EvalDir)
		}
		res, err = run.Eval(cx, o)
	} else {
		if o.Out == "" {
			o.Out = filepath.Join("runs", r.Name, "eval-"+time.Now().Format("20060102-150405"))
		}
		res, err = runs.Eval(cx, r, o)
	}
	if cx.Err() != nil {
		// Ctrl-C: whatever the eval returned (an error, or results of
		// the cases it got to), it did not finish.
		return prog.interrupted(o.Out, *out == "" && (run == nil || len(runSets) > 0))
	}
	if err != nil {
		return err
	}
	printHeadline(res)
	outAbs, _ := filepath.Abs(o.Out)
	fmt.Printf("\nreport: %s\n", displayPath(filepath.Join(outAbs, "report.html")))
	if g != nil {
		ok, line, err := g.Check(res)
		var failed *evals.FailedError
		if errors.As(err, &failed) {
			return gateNotMet(err.Error())
		}
		if err != nil {
			return err
		}
		if !ok {
			return gateNotMet(line)
		}
		log.Info("gate met", "gate", line)
	}
	return nil
}

// gateNotMet is the error of a --fail-under gate that does not hold (a
// contestant it names that failed included).
func gateNotMet(line string) error {
	return &exitError{code: exitGate, err: fmt.Errorf("--fail-under not met: %s", line)}
}

// evalProgress shows an eval's progress: a line per contestant every few
// seconds and when it is done, a line for every case that failed when
// asked (not for those a failed contestant was not asked), and what a
// contestant waits for while no answer comes. It keeps the latest counts
// for the line an interrupted eval ends with.
type evalProgress struct {
	last   time.Time
	latest map[string]evals.Progress // by phase and contestant
}

func (e *evalProgress) show(p evals.Progress) {
	e.latest[p.Phase+"\x00"+p.Contestant] = p
	done := fmt.Sprintf("%d/%d", p.Done, p.Total)
	switch {
	case p.Wait != nil:
		log.Info(p.Phase, "contestant", p.Contestant, "done", done, "waiting", p.Wait.String())
		e.last = time.Now()
		return
	case p.Err != nil && !p.NotAsked:
		log.Warn("case failed", "contestant", p.Contestant, "err", textfmt.OneLine(p.Err.Error()))
	}
	if p.Done == p.Total || time.Since(e.last) > 5*time.Second {
		log.Info(p.Phase, "contestant", p.Contestant, "done", done, "cached", p.Cached, "failed", p.Failed)
		e.last = time.Now()
	}
}

// interrupted is the one line an eval stopped by Ctrl-C ends with (exit
// code 130, as for every command Ctrl-C stops): what
// the cache kept and the command that resumes (the same one, with --out
// when the report folder was a fresh default).
func (e *evalProgress) interrupted(out string, addOut bool) error {
	kept, fresh := 0, 0
	for _, p := range e.latest {
		kept += p.Done - p.Failed
		fresh += p.Done - p.Failed - p.Cached
	}
	args := os.Args[1:]
	if addOut {
		args = append(append([]string{}, args...), "--out", out)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: %d answers kept in the cache %s (%d of them new); to resume, run: finetune %s",
		kept, displayPath(runs.EvalCacheDir(out)), fresh, strings.Join(quoted, " "))}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printHeadline prints how the cases were chosen, every contestant's
// status and scores with their 95% intervals (marked where they cover
// fewer cases than were asked), why a contestant is not ok, and each
// contestant's difference from the base with the number of cases it
// covers.
func printHeadline(res *evals.Results) {
	if res.Selection != nil {
		fmt.Printf("cases: %s\n\n", res.Selection)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "contestant\tstatus\tanswered\thit limit")
	var cols []string
	perCase := map[string]bool{}
	for _, m := range res.Metrics {
		cols = append(cols, m.Columns...)
		perCase[m.Name] = true
	}
	for _, c := range cols {
		fmt.Fprintf(w, "\t%s", c)
	}
	fmt.Fprint(w, "\tcost $\tp50 ms\n")
	for _, c := range res.Contestants {
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s", c.Name, c.Status, c.Answered, c.Asked, c.LimitText())
		for _, col := range cols {
			s, ok := c.Scores[col]
			if !ok {
				fmt.Fprint(w, "\t-")
				continue
			}
			fmt.Fprintf(w, "\t%.3f [%.3f, %.3f]", s.Value, s.Low, s.High)
			if s.Incomplete {
				fmt.Fprintf(w, " (n=%d)", s.N)
			}
		}
		fmt.Fprintf(w, "\t%.4f\t%.0f\n", c.Cost, c.LatencyP50MS)
	}
	w.Flush()
	for _, c := range res.Contestants {
		if l := c.LimitWarning(); l != "" {
			fmt.Printf("warning: %s\n", l)
		}
	}
	for _, m := range res.Metrics {
		for _, c := range res.Contestants {
			if cm := c.Confusion[m.Name]; cm != nil && cm.NotALabel > 0 {
				fmt.Printf("%s %s: %s\n", c.Name, m.Name, cm.NotALabelText())
			}
		}
	}
	for _, c := range res.Contestants {
		if c.Status != "ok" {
			fmt.Printf("%s %s (%d of %d answered, %d failed): %s\n", c.Name, c.Status, c.Answered, c.Asked, c.Failed, textfmt.OneLine(c.Error))
		}
	}
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "difference\tcolumn\tdiff [95% CI]\twins/ties/losses\tcases")
	// Every contestant against the base; with three contestants or fewer
	// also the pair of the others (sft against dpo, tuned against an API),
	// else those are in report.md.
	others := 0
	for _, d := range res.Comparisons {
		if d.Against != res.Base && len(res.Contestants) > 3 {
			others++
			continue
		}
		if d.N == 0 {
			fmt.Fprintf(w, "%s - %s\t%s\tnone: no case both answered\t-\t0 of %d (incomplete)\n", d.Contestant, d.Against, d.Column, d.Asked)
			continue
		}
		mark := ""
		if d.Significant() {
			mark = " *"
		}
		wtl := fmt.Sprintf("%d/%d/%d", d.Wins, d.Ties, d.Losses)
		if !perCase[d.Column] {
			wtl = "-"
		}
		n := fmt.Sprint(d.N)
		if d.Incomplete {
			n = fmt.Sprintf("%d of %d (incomplete)", d.N, d.Asked)
		}
		fmt.Fprintf(w, "%s - %s\t%s\t%+.3f [%+.3f, %+.3f]%s\t%s\t%s\n", d.Contestant, d.Against, d.Column, d.Diff, d.Low, d.High, mark, wtl, n)
	}
	w.Flush()
	if others > 0 {
		fmt.Printf("(%d more differences, between contestants other than the base, in report.md)\n", others)
	}
}
