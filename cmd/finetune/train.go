package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/job"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

func runTrain(args []string) error {
	fs := newFlags("train")
	out := fs.String("out", "", "run folder (default runs/<name>/<timestamp>)")
	resume := fs.Bool("resume", false, "continue from the newest checkpoint (of --out, or of the recipe's newest run)")
	var sets listFlag
	fs.Var(&sets, "set", "override a recipe field, e.g. --set train.learning_rate=1e-4 (repeatable)")
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	setVerbose(*verbose)
	if len(pos) != 1 {
		return usageErr("train takes one recipe file, got %d arguments", len(pos))
	}
	r, err := recipes.Load(pos[0], sets)
	if err != nil {
		return err
	}
	loadBackends()
	warnSIMD()

	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := log.Default()
	var logFile *os.File
	var early []string // log lines from before the run folder exists
	prog := newProgress(os.Stderr)
	res, err := job.Train(cx, r, job.Options{
		Out:    *out,
		Resume: *resume,
		Log: func(msg string, kv ...any) {
			logger.Info(msg, kv...)
			early = append(early, oneLine(msg+" "+fmt.Sprint(kv...)))
		},
		Progress: func(m lora.Metrics) {
			if logFile == nil {
				// The run folder exists once training starts.
				dir := *out
				if dir == "" {
					dir = currentRunDir(r.Name)
				}
				if f, err := os.OpenFile(filepath.Join(dir, job.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
					logFile = f
					fmt.Fprintf(f, "finetune train %s (%s)\n", strings.Join(args, " "), time.Now().Format(time.RFC3339))
					for _, l := range early {
						fmt.Fprintln(f, l)
					}
				}
			}
			prog.update(m, logFile)
		},
	})
	prog.done()
	if logFile != nil {
		defer logFile.Close()
	}
	if err != nil {
		return err
	}
	t := res.Train
	if t.Interrupted {
		logger.Warn("interrupted: checkpoint written", "step", t.Steps, "resume", fmt.Sprintf("finetune train %s --resume --out %s", pos[0], res.Dir))
	}
	kv := []any{"steps", t.Steps, "tokens", t.TokensSeen, "train_loss", fmt.Sprintf("%.4f", t.TrainLoss), "wall", (time.Duration(t.WallSeconds) * time.Second).String()}
	if t.ValLoss != nil {
		kv = append(kv, "val_loss", fmt.Sprintf("%.4f", *t.ValLoss))
	}
	if t.StoppedEarly {
		kv = append(kv, "stopped_early_at_best_step", t.BestStep)
	}
	logger.Info("trained", kv...)
	if logFile != nil {
		fmt.Fprintf(logFile, "done: %s\n", oneLine(fmt.Sprint(kv...)))
	}
	fmt.Println(res.Dir)
	if t.Interrupted {
		return &exitError{code: exitInterrupted} // said above, with how to resume
	}
	if res.Recipe.Publish.Ollama == "" {
		return nil
	}
	return publishAfterTraining(cx, res.Dir)
}

// currentRunDir is the newest folder of runs/<name>.
func currentRunDir(name string) string {
	root := filepath.Join("runs", name)
	entries, _ := os.ReadDir(root)
	newest := ""
	for _, e := range entries {
		if e.IsDir() && e.Name() > newest {
			newest = e.Name()
		}
	}
	return filepath.Join(root, newest)
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
	st, err := w.Stat()
	return &progress{w: w, tty: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) update(m lora.Metrics, logFile io.Writer) {
	line := fmt.Sprintf("step %d/%d  loss %.4f", m.Step, m.TotalSteps, m.Loss)
	if m.ValLoss != nil {
		line += fmt.Sprintf("  val %.4f", *m.ValLoss)
	}
	line += fmt.Sprintf("  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s", m.LR, m.GradNorm, m.TokensPerSec, (time.Duration(m.ETASec) * time.Second).String())
	if logFile != nil {
		fmt.Fprintf(logFile, "%s  elapsed %.0fs\n", line, m.ElapsedSec)
	}
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
		fmt.Printf("%s: ok (%s, base %s, data %s)\n", pos[0], r.Name, r.Base, r.Data.Train)
		return nil
	}
	y, err := r.YAML()
	if err != nil {
		return err
	}
	os.Stdout.Write(y)
	return nil
}
