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

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/runs"
	"github.com/finetune-dev/finetune/sweeps"
)

func runPublish(args []string) error {
	fs := newFlags("publish")
	name := fs.String("ollama", "", "model name to create, e.g. support-bot or team/support-bot:v2 (default: the recipe's publish.ollama)")
	host := fs.String("host", "", "Ollama server (default: the recipe's publish.host, $OLLAMA_HOST, http://127.0.0.1:11434)")
	base := fs.String("base", "", "base model: a GGUF file, or ollama:NAME to create FROM that Ollama model (default: the run's base)")
	tmplFile := fs.String("template", "", "file holding the Ollama chat template to serve with (checked against training's)")
	mfOnly := fs.Bool("modelfile-only", false, "check the adapter and the template and write the run folder's Modelfile, without a server")
	chatTmpl := fs.String("chat-template", "", "the chat template training used: a llama.cpp built-in name or none (default: the recipe's data.template, else the base's own)")
	best := fs.Bool("best", false, "with a sweep folder: publish its best trial (the leaderboard's first)")
	as := fs.String("as", "", "serve the tuned model as an adapter over the base, as a merged model, or auto: what the server's version serves (default: the recipe's publish.as, else auto)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch *as {
	case "", "auto", "adapter", "merged":
	default:
		return usageErr("--as %q: use adapter, merged or auto", *as)
	}
	if len(pos) != 1 {
		return usageErr("publish takes one run folder or adapter file, got %d arguments", len(pos))
	}
	var tmpl string
	if *tmplFile != "" {
		b, err := os.ReadFile(*tmplFile)
		if err != nil {
			return fmt.Errorf("--template: %w", err)
		}
		tmpl = string(b)
	}
	loadBackends()
	warnSIMD()
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := runs.PublishOptions{Name: *name, Host: *host, Base: *base, Template: tmpl, ChatTemplate: *chatTmpl, ModelfileOnly: *mfOnly, As: *as, Logger: slog.New(log.Default())}

	target := pos[0]
	if _, err := os.Stat(filepath.Join(target, sweeps.SpecFile)); err == nil {
		if !*best {
			return usageErr("%s is a sweep folder: give --best to publish its best trial, or a trial's run folder (%s)", target, filepath.Join(target, sweeps.TrialsDir, "NNN"))
		}
		sw, err := sweeps.Open(target)
		if err != nil {
			return err
		}
		lb, err := sw.Build(cx)
		if err != nil {
			return err
		}
		if target, err = lb.BestRun(); err != nil {
			return err
		}
		o.Logger.Info("publishing the sweep's best trial", "trial", *lb.Best, "metric", lb.Metric, "run", displayPath(target))
	} else if *best {
		return usageErr("--best takes a sweep folder (made by finetune sweep); %s is not one", target)
	}
	if st, err := os.Stat(target); err == nil && st.IsDir() {
		run, err := runs.Open(target)
		if err != nil {
			return err
		}
		defer run.Close()
		res, err := run.Publish(cx, o)
		if err != nil {
			return err
		}
		if *mfOnly {
			fmt.Printf("wrote %s (template: %s)\ncreate the model with: ollama create %s -f %s\n", res.Modelfile, res.Template, res.Model, res.Modelfile)
			return nil
		}
		printPublished(os.Stdout, res)
		return nil
	}
	if *mfOnly {
		return usageErr("--modelfile-only writes into a run folder: give one")
	}
	// A lone adapter file: the base must be given.
	if _, err := os.Stat(target); err != nil {
		return fmt.Errorf("%s: no such run folder or adapter file", target)
	}
	if *base == "" {
		return usageErr("--base is required with an adapter file")
	}
	if *name == "" {
		return usageErr("--ollama NAME is required with an adapter file")
	}
	if n, ok := strings.CutPrefix(*base, "ollama:"); ok {
		return usageErr("with an adapter file, give --base as the GGUF file trained on (ollama:%s needs a run folder, which records the file)", n)
	}
	res, err := publish.Ollama(cx, publish.Options{Name: *name, Host: *host, Base: *base, Adapter: target,
		Template: publish.TemplateSpec{Given: tmpl, Train: *chatTmpl}, As: *as, Logger: o.Logger})
	if err != nil {
		return err
	}
	printPublished(os.Stdout, res)
	return nil
}

// printPublished tells a person what was published and how its first
// answer compared.
func printPublished(w io.Writer, r *publish.Result) {
	fmt.Fprintf(w, "published %s to %s\n", r.Model, r.Host)
	state := func(d string) string {
		for _, u := range r.Uploaded {
			if u == d {
				return "uploaded"
			}
		}
		return "already on the server"
	}
	switch {
	case r.Merged != "":
		// The merged model replaces the base.
	case strings.HasPrefix(r.From, "sha256:"):
		fmt.Fprintf(w, "  base       %s (%s)\n", short(r.From), state(r.From))
	default:
		fmt.Fprintf(w, "  base       Ollama model %s\n", r.From)
	}

	if r.Merged != "" {
		fmt.Fprintf(w, "  merged     %s, %s (%s)\n", short(r.Merged), r.MergedType, state(r.Merged))
		if c := r.MergeCheck; c != nil && c.Identical {
			fmt.Fprintln(w, "  merge      answers as the base with the adapter, in-process")
		} else if c != nil {
			fmt.Fprintf(w, "  merge      the merged model's answer parts from the base with the adapter's after %d characters, in-process\n", c.Agree)
			if d := c.Part; d != nil {
				fmt.Fprintf(w, "             after %d tokens: merged picks %q (log-prob %.3f merged, %.3f with the adapter), the adapter %q (%.3f merged, %.3f with the adapter)\n",
					d.AfterTokens, d.Merged, d.MergedPickInMerged, d.MergedPickInLocal, d.Local, d.LocalPickInMerged, d.LocalPickInLocal)
			}
		}
	} else {
		fmt.Fprintf(w, "  adapter    %s (%s)\n", short(r.Adapter), state(r.Adapter))
	}
	fmt.Fprintf(w, "  template   %s", r.Template)
	if len(r.Stop) > 0 {
		fmt.Fprintf(w, "; stop %s", strings.Join(quoteAll(r.Stop), " "))
	}
	fmt.Fprintln(w)
	s := r.Smoke
	fmt.Fprintf(w, "  asked      %q\n  served     %q (%.0f ms)\n  in-process %q\n", s.Prompt, s.Served, s.ServedMS, s.Local)
	switch {
	case s.Identical:
		fmt.Fprintln(w, "  check      identical answers")
	case s.Prefix:
		fmt.Fprintln(w, "  check      identical as far as the served answer goes (Ollama stops answers that repeat one token over 30 times)")
	default:
		fmt.Fprintf(w, "  check      answers differ after %d characters (numerics of another device or build can do this; look if it is early)\n", s.Agree)
	}
	if r.Modelfile != "" {
		fmt.Fprintf(w, "  Modelfile  %s\n", r.Modelfile)
	}
	fmt.Fprintf(w, "run it: ollama run %s\n", r.Model)
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// publishAfterTraining publishes a run whose recipe has a publish section;
// a failure keeps the run and says how to retry.
func publishAfterTraining(cx context.Context, run *runs.Run) error {
	log.Info("publishing", "ollama", run.Recipe.Publish.Ollama)
	res, err := run.Publish(cx, runs.PublishOptions{Logger: slog.New(log.Default())})
	if err != nil {
		dir := displayPath(run.Dir)
		return fmt.Errorf("training finished (%s), but publishing failed: %w; retry with: finetune publish %s", dir, err, dir)
	}
	printPublished(os.Stderr, res)
	return nil
}
