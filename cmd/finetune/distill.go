package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

const distillHelp = "Ask the recipe's teacher (distill.teacher, an ollama or openai contestant of its eval suite) every\n" +
	"prompt of distill.prompts, filter its answers (cut at max_tokens, empty, refusal patterns, duplicates,\n" +
	"a judge's score) and write those kept, each with its provenance, as distilled.jsonl into a new run\n" +
	"folder with distill-report.json; then train the student (the recipe's base) on them in that folder,\n" +
	"evaluate it against the base and the teacher, and publish it when publish.ollama is set.\n" +
	"The teacher's answers are cached in runs/<name>/distill-cache: after Ctrl-C or a crash the same\n" +
	"command asks only the prompts still missing. A spent budget keeps what was answered.\n" +
	"--data-only stops after writing the data."

// runDistill distills a recipe's training data from its teacher, then
// trains, evaluates and publishes the student.
func runDistill(args []string) error {
	fs := newFlags("distill")
	out := fs.String("out", "", "run folder to make (default runs/<name>/<timestamp>); it must not exist or be empty")
	var sets listFlag
	fs.Var(&sets, "set", "override a recipe field, e.g. --set distill.answers=2 (repeatable)")
	dataOnly := fs.Bool("data-only", false, "stop after writing the distilled data (train later with finetune train --set data.train=RUN_DIR/distilled.jsonl)")
	device := fs.String("device", "", "where to train and run the local contestants: auto, cpu, cuda[:N] (sets train.device)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("distill takes one recipe file, got %d arguments", len(pos))
	}
	if *device != "" {
		sets = append(sets, "train.device="+*device)
	}
	r, err := recipes.Load(pos[0], sets)
	if err != nil {
		return err
	}
	if !r.Distills() {
		return &recipes.Error{File: r.Path, Path: "distill", Msg: "no distill section: give distill.prompts (the prompts' file) and distill.teacher (an ollama or openai contestant of eval.contestants)"}
	}
	logger := slog.New(log.Default())
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if !*dataOnly {
		// The student's base is checked before the teacher is paid.
		if _, err := basemodel.Resolve(cx, r.Base, r.Dir, basemodel.Options{}); err != nil {
			return &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
		}
	}
	prog := &evalProgress{latest: map[string]evals.Progress{}}
	run, rep, err := runs.Distill(cx, r, runs.DistillOptions{Out: *out, Logger: logger, Progress: prog.show})
	if cx.Err() != nil {
		kept := 0
		for _, p := range prog.latest {
			kept += p.Done - p.Failed
		}
		return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: %d of the teacher's answers are kept in its cache; run the same command again to ask only the others", kept)}
	}
	if rep != nil {
		printDistilled(rep)
	}
	if err != nil {
		return err
	}
	fmt.Printf("data: %s\n", displayPath(run.Path(runs.DistilledFile)))
	if *dataOnly {
		run.Close()
		fmt.Println(displayPath(run.Dir))
		return nil
	}
	dir := run.Dir
	run.Close()

	// Train the student on the distilled file, in the same folder.
	student := *r
	student.Data.Train = run.Path(runs.DistilledFile)
	loadBackends()
	warnSIMD()
	tprog := newProgress(os.Stderr)
	trun, res, err := runs.Start(cx, &student, runs.TrainOptions{Out: dir, Overrides: sets, Logger: logger, Progress: tprog.update,
		Command: "finetune distill " + strings.Join(args, " ")})
	tprog.done()
	if trun != nil {
		defer trun.Close()
	}
	if err != nil {
		return err
	}
	if res.Interrupted {
		logger.Warn("interrupted: checkpoint written", "step", res.Steps, "resume", "finetune train --resume "+displayPath(dir))
		return &exitError{code: exitInterrupted}
	}
	trun.Close()

	// Evaluate the student against the base and the teacher.
	erun, err := runs.Open(dir)
	if err != nil {
		return err
	}
	defer erun.Close()
	eprog := &evalProgress{latest: map[string]evals.Progress{}}
	eres, err := erun.Eval(cx, runs.EvalOptions{Logger: logger, Progress: eprog.show})
	if cx.Err() != nil {
		return eprog.interrupted(erun.Path(runs.EvalDir), false)
	}
	if err != nil {
		return fmt.Errorf("training finished (%s), but the eval failed: %w; retry with: finetune eval %s", displayPath(dir), err, displayPath(dir))
	}
	printHeadline(eres)
	printDistillCosts(rep, eres, r.Distill.Teacher)
	fmt.Printf("\nreport: %s\n", displayPath(filepath.Join(erun.Path(runs.EvalDir), "report.html")))
	fmt.Println(displayPath(dir))
	if r.Publish.Ollama == "" {
		return nil
	}
	erun.Close()
	return publishAfterTraining(cx, erun)
}

// printDistilled prints what the teacher answered, cost and what the
// filters left out.
func printDistilled(rep *runs.DistillReport) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "teacher\t%s (%s %s)\n", rep.Teacher.Name, rep.Teacher.Kind, rep.Teacher.Model)
	fmt.Fprintf(w, "prompts\t%d × %d answers: %d answered (%d from the cache), %d failed\n", rep.Prompts, rep.AnswersPerPrompt, rep.Answered, rep.Cached, rep.Failed)
	if rep.Error != "" {
		fmt.Fprintf(w, "status\t%s: %s\n", rep.Status, textfmt.OneLine(rep.Error))
	}
	fmt.Fprintf(w, "tokens in / out\t%d / %d\n", rep.Usage.PromptTokens, rep.Usage.CompletionTokens)
	fmt.Fprintf(w, "cost\t%s (%s spent now)\n", textfmt.USD(rep.CostUSD), textfmt.USD(rep.SpentUSD))
	if rep.AskedPerMinute > 0 {
		fmt.Fprintf(w, "speed\t%.1f answers a minute\n", rep.AskedPerMinute)
	}
	f := rep.Filtered
	fmt.Fprintf(w, "left out\t%d: %s\n", f.Total(), f)
	fmt.Fprintf(w, "kept\t%d answers\n", rep.Rows)
	w.Flush()
}

// printDistillCosts sets the teacher's answers beside the student's: what
// the training data cost and what 1,000 answers cost each contestant.
func printDistillCosts(rep *runs.DistillReport, res *evals.Results, teacher string) {
	fmt.Printf("\ntraining data: %d answers from %s for %s\n", rep.Answered, teacher, textfmt.USD(rep.CostUSD))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "contestant\tcost per 1,000 answers\tp50 latency\n")
	for _, c := range res.Contestants {
		fmt.Fprintf(w, "%s\t%s\t%.0f ms\n", c.Name, textfmt.USD(c.CostPerThousand()), c.LatencyP50MS)
	}
	w.Flush()
}
