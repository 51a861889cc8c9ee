package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

func runTrain(args []string) error {
	fs := newFlags("train")
	out := fs.String("out", "", "run folder to make (default runs/<name>/<timestamp>); it must not exist or be empty")
	resume := fs.Bool("resume", false, "continue a run from its checkpoint: RUN_DIR, or the newest unfinished run of RECIPE")
	var sets listFlag
	fs.Var(&sets, "set", "override a recipe field, e.g. --set train.learning_rate=1e-4 (repeatable)")
	device := fs.String("device", "", "where to train: auto (the first GPU, else the CPU), cpu, cuda[:N] (sets train.device)")
	acceptData := fs.Bool("accept-changed-data", false, "with --resume: go on although the data files changed since the run started (recorded in run.json)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *device != "" {
		sets = append(sets, "train.device="+*device)
	}
	switch {
	case len(pos) > 1:
		return usageErr("train takes one recipe file (or, with --resume, a run folder), got %d arguments", len(pos))
	case len(pos) == 0 && !(*resume && *out != ""):
		return usageErr("train takes a recipe file, or --resume RUN_DIR")
	case *resume && *device != "":
		return usageErr("a resumed run keeps its recipe's train.device; --device starts a new run (leave out --resume)")
	case *acceptData && !*resume:
		return usageErr("--accept-changed-data goes with --resume")
	case *resume && len(sets) > 0:
		return usageErr("a resumed run keeps the recipe and overrides it started with; --set starts a new run (leave out --resume)")
	}
	logger := slog.New(log.Default())
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	prog := newProgress(os.Stderr)
	o := runs.TrainOptions{Out: *out, Overrides: sets, Logger: logger, Progress: prog.update,
		Command: "finetune train " + strings.Join(args, " "), AcceptChangedData: *acceptData}

	var run *runs.Run
	var res *lora.Result
	if *resume {
		if run, err = runToResume(pos, *out); err != nil {
			return err
		}
		loadBackends()
		warnSIMD()
		res, err = run.Resume(cx, o)
	} else {
		r, lerr := recipes.Load(pos[0], sets)
		if lerr != nil {
			return lerr
		}
		loadBackends()
		warnSIMD()
		run, res, err = runs.Start(cx, r, o)
	}
	prog.done()
	if run != nil {
		defer run.Close()
	}
	if err != nil {
		return err
	}
	if res.Interrupted {
		logger.Warn("interrupted: checkpoint written", "step", res.Steps, "resume", "finetune train --resume "+displayPath(run.Dir))
		fmt.Println(displayPath(run.Dir))
		return &exitError{code: exitInterrupted} // said above, with how to resume
	}
	fmt.Println(displayPath(run.Dir))
	if run.Recipe.Publish.Ollama == "" {
		return nil
	}
	return publishAfterTraining(cx, run)
}

// runToResume is the run a --resume names: a run folder (as the argument
// or --out), or the newest unfinished run of a recipe.
func runToResume(pos []string, out string) (*runs.Run, error) {
	dir := out
	if len(pos) == 1 {
		st, err := os.Stat(pos[0])
		switch ext := strings.ToLower(filepath.Ext(pos[0])); {
		case err == nil && st.IsDir():
			dir = pos[0]
		case err != nil && ext != ".yaml" && ext != ".yml":
			return nil, fmt.Errorf("%s: no such run folder", pos[0])
		case dir == "":
			r, err := recipes.Load(pos[0], nil)
			if err != nil {
				return nil, err
			}
			run, err := runs.Newest("runs", r.Name, func(run *runs.Run) bool {
				return run.Record.State != runs.Finished && run.Recipe != nil
			})
			if err != nil {
				return nil, fmt.Errorf("%w that is unfinished: nothing to resume", err)
			}
			return run, nil
		}
	}
	return runs.Open(dir)
}

// displayPath is p relative to the working directory when it is inside
// it, else p.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// progress shows training progress: a bar redrawn in place on a terminal,
// a log line every 10 steps (and the last) otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	drawn bool
	last  time.Time
}

func newProgress(w *os.File) *progress {
	return &progress{w: w, tty: textfmt.IsTerminal(w)}
}

func (p *progress) update(m lora.Metrics) {
	line := fmt.Sprintf("step %d/%d  loss %.4f", m.Step, m.TotalSteps, m.Loss)
	if m.ValLoss != nil {
		line += fmt.Sprintf("  val %.4f", *m.ValLoss)
	}
	line += fmt.Sprintf("  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s", m.LR, m.GradNorm, m.TokensPerSec, (time.Duration(m.ETASec) * time.Second).String())
	if p.tty {
		const width = 24
		done := width * m.Step / max(1, m.TotalSteps)
		bar := strings.Repeat("█", done) + strings.Repeat("░", width-done)
		fmt.Fprintf(p.w, "\r\033[K%s %s", bar, line)
		p.drawn = true
		return
	}
	if m.Step%10 == 0 || m.Step == m.TotalSteps || m.ValLoss != nil || time.Since(p.last) > 30*time.Second {
		log.Info(line)
		p.last = time.Now()
	}
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func runRecipe(sub string, args []string) error {
	fs := newFlags("recipe " + sub)
	var sets listFlag
	fs.Var(&sets, "set", "override a recipe field (repeatable)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("recipe %s takes one recipe file", sub)
	}
	r, err := recipes.Load(pos[0], sets)
	if err != nil {
		return err
	}
	if sub == "validate" {
		data := r.Data.Train
		if data == "" && r.Distills() {
			data = "distilled by " + r.Distill.Teacher + " from " + r.Distill.Prompts
		}
		fmt.Printf("%s: ok (%s, base %s, data %s)\n", pos[0], r.Name, r.Base, data)
		return nil
	}
	y, err := r.YAML()
	if err != nil {
		return err
	}
	os.Stdout.Write(y)
	return nil
}
