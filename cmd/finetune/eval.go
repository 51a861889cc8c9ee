package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	setVerbose(*verbose)
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
	if st, err := os.Stat(pos[0]); err == nil && st.IsDir() {
		if *runDir != "" || *adapter != "" {
			return usageErr("a run folder brings its adapter: leave out --run and --adapter")
		}
		if len(sets) > 0 {
			return usageErr("--set changes a recipe: give the recipe with --run %s", pos[0])
		}
		*runDir = pos[0]
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
	last := time.Time{}
	o := runs.EvalOptions{Recipe: r, Adapter: *adapter, Out: *out, Logger: slog.New(log.Default()), Progress: func(p evals.Progress) {
		if p.Err != nil {
			log.Warn("case failed", "contestant", p.Contestant, "err", textfmt.OneLine(p.Err.Error()))
		}
		if p.Done == p.Total || time.Since(last) > 5*time.Second {
			log.Info(p.Phase, "contestant", p.Contestant, "done", fmt.Sprintf("%d/%d", p.Done, p.Total), "cached", p.Cached, "failed", p.Failed)
			last = time.Now()
		}
	}}
	var res *evals.Results
	if run != nil {
		if o.Out == "" {
			o.Out = run.Path(runs.EvalDir)
		}
		res, err = run.Eval(cx, o)
	} else {
		if o.Out == "" {
			o.Out = filepath.Join("runs", r.Name, "eval-"+time.Now().Format("20060102-150405"))
		}
		res, err = runs.Eval(cx, r, o)
	}
	if err != nil {
		return err
	}
	printHeadline(res)
	outAbs, _ := filepath.Abs(o.Out)
	fmt.Printf("\nreport: %s\n", displayPath(filepath.Join(outAbs, "report.html")))
	if g != nil {
		ok, line, err := g.Check(res)
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: exitGate, err: fmt.Errorf("--fail-under not met: %s", line)}
		}
		log.Info("gate met", "gate", line)
	}
	return nil
}

// printHeadline prints every contestant's scores with their 95% intervals,
// and each contestant's difference from the base.
func printHeadline(res *evals.Results) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "contestant\tstatus")
	var cols []string
	for _, m := range res.Metrics {
		cols = append(cols, m.Columns...)
	}
	for _, c := range cols {
		fmt.Fprintf(w, "\t%s", c)
	}
	fmt.Fprint(w, "\tcost $\tp50 ms\n")
	for _, c := range res.Contestants {
		fmt.Fprintf(w, "%s\t%s", c.Name, c.Status)
		for _, col := range cols {
			s, ok := c.Scores[col]
			if !ok {
				fmt.Fprint(w, "\t-")
				continue
			}
			fmt.Fprintf(w, "\t%.3f [%.3f, %.3f]", s.Value, s.Low, s.High)
		}
		fmt.Fprintf(w, "\t%.4f\t%.0f\n", c.Cost, c.LatencyP50MS)
	}
	w.Flush()
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "difference\tcolumn\tdiff [95% CI]\twins/ties/losses")
	for _, d := range res.Comparisons {
		if d.Against != res.Base {
			continue
		}
		mark := ""
		if d.Significant() {
			mark = " *"
		}
		fmt.Fprintf(w, "%s - %s\t%s\t%+.3f [%+.3f, %+.3f]%s\t%d/%d/%d\n", d.Contestant, d.Against, d.Column, d.Diff, d.Low, d.High, mark, d.Wins, d.Ties, d.Losses)
	}
	w.Flush()
}
