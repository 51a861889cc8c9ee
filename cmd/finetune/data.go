package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/runs"
)

// fieldsFlag collects --field KEY=COLUMN.
type fieldsFlag struct{ f *datasets.Fields }

func (f fieldsFlag) String() string { return "" }
func (f fieldsFlag) Set(v string) error {
	key, col, ok := strings.Cut(v, "=")
	if !ok || col == "" {
		return fmt.Errorf("want KEY=COLUMN, got %q", v)
	}
	switch key {
	case "prompt":
		f.f.Prompt = col
	case "response":
		f.f.Response = col
	case "system":
		f.f.System = col
	case "label":
		f.f.Label = col
	default:
		return fmt.Errorf("unknown field %q (want prompt, response, system or label)", key)
	}
	return nil
}

func runDataInspect(args []string) error {
	fs := newFlags("data inspect")
	var cfg datasets.Config
	model := fs.String("model", "", "base model (GGUF) whose tokenizer and chat template render the data")
	fs.StringVar(&cfg.Template, "template", "", "chat template instead of the model's: a llama.cpp built-in name (chatml, llama2, llama3, ...) or none (prompt + completion as plain text)")
	fs.StringVar(&cfg.Eval, "eval", "", "separate eval data (file, folder or glob)")
	fs.Float64Var(&cfg.EvalRatio, "eval-ratio", 0, "share of the prompts held out for eval when there is no --eval")
	fs.Uint64Var(&cfg.Seed, "seed", 42, "seed of the eval split")
	format := fs.String("format", "", "record format (default: detected): messages, sharegpt, alpaca, prompt-completion, text, fields")
	fs.Var(fieldsFlag{&cfg.Fields}, "field", "map a column: prompt=COL, response=COL, system=COL or label=COL (repeatable)")
	fs.StringVar(&cfg.System, "system", "", "system prompt for conversations that have none")
	fs.BoolVar(&cfg.TrainOnInputs, "train-on-inputs", false, "train on prompts too, not only on the assistant's answers")
	ctxLen := fs.Int("ctx", 0, "context length of training windows (default: a recipe's default data.seq_len, 512)")
	overflow := fs.String("overflow", "drop", "examples longer than the context: drop or truncate")
	fs.IntVar(&cfg.MaxBadRows, "max-bad-rows", 0, "skip up to this many bad rows, listing them (0: stop at the first)")
	fs.BoolVar(&cfg.KeepDuplicates, "keep-duplicates", false, "keep exact duplicate records")
	dedupe := fs.String("dedupe", "exact", "exact: remove exact duplicates; near: also leave out training records whose prompt is (nearly) an eval prompt; none")
	nearDup := 0.8
	fs.Float64Var(&nearDup, "near-duplicate", 0.8, "similarity (share of words, case ignored) from which a training prompt is a near duplicate of an eval prompt; 0: no check")
	exampleN := fs.Int("example", 1, "which training example to show rendered (1 is the first)")
	var sets listFlag
	fs.Var(&sets, "set", "with a recipe: override a recipe field, key.path=value (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usageErr("data inspect takes one data file, folder, glob or recipe, got %d arguments", len(pos))
	case *exampleN < 1:
		return usageErr("--example counts from 1")
	case *ctxLen < 0:
		return usageErr("--ctx must not be negative")
	}
	var r *recipes.Recipe
	if ext := strings.ToLower(filepath.Ext(pos[0])); ext == ".yaml" || ext == ".yml" {
		var given []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "model", "example", "json", "v", "set":
			default:
				given = append(given, "--"+f.Name)
			}
		})
		if len(given) > 0 {
			return usageErr("with a recipe, change its data settings with --set data.KEY=VALUE, not %s", strings.Join(given, ", "))
		}
		if r, err = recipes.Load(pos[0], sets); err != nil {
			return err
		}
		if *model == "" {
			// The base train uses: a file, ollama:NAME, builtin:NAME or
			// catalog:NAME.
			if *model, err = basemodel.Resolve(context.Background(), r.Base, r.Dir, basemodel.Options{}); err != nil {
				return fmt.Errorf("%s: %w", pos[0], err)
			}
		}
	} else {
		if len(sets) > 0 {
			return usageErr("--set changes a recipe, and %s is not one (.yaml)", pos[0])
		}
		if *model == "" && (cfg.Template != "" || *ctxLen != 0 || cfg.TrainOnInputs) {
			return usageErr("--template, --ctx and --train-on-inputs need --model")
		}
		// A data file is inspected as a recipe with these data settings
		// and every other one at its default would train on it.
		if r, err = fileRecipe(fs, pos[0], *model, cfg, *format, *overflow, *ctxLen, *dedupe, nearDup); err != nil {
			return err
		}
	}

	var m *llama.Model
	if *model != "" {
		if m, err = llama.LoadModel(*model, llama.ModelOptions{VocabOnly: true}); err != nil {
			return err
		}
		defer m.Close()
	}
	out := dataInspection{Model: *model}
	seen := 0
	d, err := runs.ScanData(r, m, func(it datasets.Item) {
		if it.Split != datasets.TrainSplit {
			return
		}
		for i := range it.Examples {
			if seen++; seen == *exampleN {
				out.ex, out.rec = &it.Examples[i], &it.Record
			}
		}
		if m == nil {
			if seen++; seen == *exampleN {
				out.rec = &it.Record
			}
		}
	})
	if err != nil {
		var re *datasets.RowError
		if errors.As(err, &re) && r.Data.MaxBadRows == 0 {
			return fmt.Errorf("%w (--max-bad-rows N skips up to N bad rows)", err)
		}
		return err
	}
	out.Report = d.Report
	if m != nil {
		if len(d.TrainPairs) > 0 && len(d.Train) == 0 {
			// DPO: a window per side of each pair, never packed.
			var ws []lora.Window
			for _, p := range d.TrainPairs {
				ws = append(ws, p.Chosen, p.Rejected)
			}
			out.Windows = newWindowStats(ws, r.Data.SeqLen, false)
		} else {
			out.Windows = newWindowStats(d.Train, r.Data.SeqLen, r.Data.Packing == nil || *r.Data.Packing)
		}
		if n, _ := m.File.Uint(m.Architecture() + ".context_length"); n > 0 && int(n) < r.Data.SeqLen {
			out.Warnings = append(out.Warnings, fmt.Sprintf("windows of %d tokens exceed %s's context of %d: training refuses them; lower data.seq_len (--ctx)", r.Data.SeqLen, filepath.Base(*model), n))
		}
		if d.Report.Eval.Records > 0 {
			// What eval warns before generating: reference answers that
			// the contestants' max_tokens would cut off.
			cases, _, err := runs.Cases(r, *model)
			if err == nil {
				out.LongReferences, err = runs.RecipeLongReferences(r, *model, cases)
			}
			switch {
			case errors.Is(err, runs.ErrNoCases): // plain-text records: eval asks nothing
			case err != nil:
				out.Warnings = append(out.Warnings, fmt.Sprintf("could not compare the eval cases' reference answers with max_tokens: %v", err))
			case out.LongReferences != nil:
				out.Warnings = append(out.Warnings, out.LongReferences.String())
			}
		}
	}
	cfg = runs.DataConfig(r)
	if out.ex != nil {
		rd, err := datasets.NewRenderer(m, cfg.RenderOptions)
		if err != nil {
			return err
		}
		out.Example = &shownExample{Source: out.ex.Source, Tokens: out.ex.Tokens, Weights: out.ex.Weights, Trained: out.ex.Trained(), Segments: rd.Segments(*out.ex)}
	} else if out.rec != nil {
		out.Record = out.rec
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printInspection(os.Stdout, &out, cfg, textfmt.IsTerminal(os.Stdout))
	return nil
}

// fileRecipe is the recipe that trains on a data file with the data
// settings given as flags; the flags left out take the recipe defaults.
func fileRecipe(fs *flag.FlagSet, file, model string, cfg datasets.Config, format, overflow string, ctxLen int, dedupe string, nearDup float64) (*recipes.Recipe, error) {
	sets := []string{"data.train=" + file}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "template":
			sets = append(sets, "data.template="+cfg.Template)
		case "eval":
			sets = append(sets, "data.eval="+cfg.Eval)
		case "eval-ratio":
			sets = append(sets, fmt.Sprintf("data.eval_ratio=%g", cfg.EvalRatio))
		case "seed":
			sets = append(sets, fmt.Sprintf("data.seed=%d", cfg.Seed))
		case "format":
			sets = append(sets, "data.format="+format)
		case "system":
			sets = append(sets, "data.system="+cfg.System)
		case "train-on-inputs":
			sets = append(sets, fmt.Sprintf("data.train_on_inputs=%t", cfg.TrainOnInputs))
		case "ctx":
			sets = append(sets, fmt.Sprintf("data.seq_len=%d", ctxLen))
		case "overflow":
			sets = append(sets, "data.overflow="+overflow)
		case "max-bad-rows":
			sets = append(sets, fmt.Sprintf("data.max_bad_rows=%d", cfg.MaxBadRows))
		case "keep-duplicates":
			sets = append(sets, fmt.Sprintf("data.keep_duplicates=%t", cfg.KeepDuplicates))
			if cfg.KeepDuplicates {
				sets = append(sets, "data.dedupe=none")
			}
		case "dedupe":
			sets = append(sets, "data.dedupe="+dedupe)
		case "near-duplicate":
			sets = append(sets, fmt.Sprintf("data.near_duplicate=%g", nearDup))
		}
	})
	for k, v := range map[string]string{"prompt": cfg.Fields.Prompt, "response": cfg.Fields.Response, "system": cfg.Fields.System, "label": cfg.Fields.Label} {
		if v != "" {
			sets = append(sets, "data.fields."+k+"="+v)
		}
	}
	if model == "" {
		model = "none" // never loaded: without a model only records are read
	}
	abs, _ := filepath.Abs(".")
	return recipes.Decode(filepath.Join(abs, "(command line)"), []byte("name: data-inspect\nbase: "+strconv.Quote(model)+"\n"), sets)
}

type dataInspection struct {
	*datasets.Report
	Model    string   `json:"model,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// LongReferences: eval cases whose reference answer is longer than
	// a contestant's max_tokens in the model's tokens.
	LongReferences *runs.LongRefs    `json:"long_references,omitempty"`
	Windows        *windowStats      `json:"windows,omitempty"`
	Example        *shownExample     `json:"example,omitempty"`
	Record         *datasets.Record  `json:"record,omitempty"` // without a model: the record shown
	ex             *datasets.Example // the example to show
	rec            *datasets.Record
}

// windowStats is how the training examples pack into context windows.
type windowStats struct {
	Context int     `json:"context"`
	Packing bool    `json:"packing"`
	Count   int     `json:"count"`
	Fill    float64 `json:"fill"` // share of window tokens that are not padding
	used    int
}

// newWindowStats describes the windows training gets.
func newWindowStats(ws []lora.Window, ctx int, packing bool) *windowStats {
	st := &windowStats{Context: ctx, Packing: packing, Count: len(ws)}
	for i := range ws {
		for _, s := range ws[i].Seq {
			if s >= 0 {
				st.used++
			}
		}
	}
	if st.Count > 0 {
		st.Fill = float64(st.used) / float64(st.Count*ctx)
	}
	return st
}

type shownExample struct {
	Source   string             `json:"source"`
	Tokens   []int32            `json:"tokens"`
	Weights  []float32          `json:"weights"`
	Trained  int                `json:"trained"`
	Segments []datasets.Segment `json:"segments"`
}

func printInspection(w io.Writer, in *dataInspection, cfg datasets.Config, color bool) {
	rep := in.Report
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("train data", "%s", fileList(rep.TrainFiles))
	if len(rep.EvalFiles) > 0 {
		row("eval data", "%s", fileList(rep.EvalFiles))
	} else {
		row("eval split", "%s", rep.EvalSplit)
	}
	var formats []string
	for _, f := range slices.Sorted(maps.Keys(stringKeys(rep.Formats))) {
		formats = append(formats, fmt.Sprintf("%s (%d records)", f, rep.Formats[datasets.Format(f)]))
	}
	row("format", "%s", orDash(strings.Join(formats, ", ")))
	if in.Model != "" {
		row("model", "%s", in.Model)
		row("chat template", "%s", rep.Template)
		row("context", "%d tokens; longer examples: %s", rep.MaxLength, rep.Overflow)
	}
	tw.Flush()

	fmt.Fprintln(w)
	split := func(k string, f func(s *datasets.SplitReport) string) {
		fmt.Fprintf(w, "%-26s %10s %10s\n", k, f(&rep.Train), f(&rep.Eval))
	}
	fmt.Fprintf(w, "%-26s %10s %10s\n", "", "train", "eval")
	split("records", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Records) })
	split("duplicates removed", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Duplicates) })
	if in.Model != "" {
		split("examples", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Examples) })
		if rep.Train.Pairs+rep.Eval.Pairs+rep.Train.DroppedPairs+rep.Eval.DroppedPairs > 0 {
			split("preference pairs", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Pairs) })
			split("  identical", func(s *datasets.SplitReport) string { return fmt.Sprint(s.IdenticalPairs) })
			split("  truncated", func(s *datasets.SplitReport) string { return fmt.Sprint(s.TruncatedPairs) })
			split("  dropped (too long)", func(s *datasets.SplitReport) string { return fmt.Sprint(s.DroppedPairs) })
		}
		split("truncated", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Truncated) })
		split("dropped (too long)", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Dropped) })
		if rep.Train.Unmeasured+rep.Eval.Unmeasured > 0 {
			split("  of which by byte length", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Unmeasured) })
		}
		if rep.Train.Untrained > 0 {
			split("dropped (nothing trained)", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Untrained) })
		}
		split("tokens", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Tokens) })
		split("trained tokens", func(s *datasets.SplitReport) string { return fmt.Sprint(s.Trained) })
		split("masked fraction", func(s *datasets.SplitReport) string { return fmt.Sprintf("%.1f%%", 100*s.MaskedFraction()) })
	}
	for _, warn := range in.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warn)
	}
	if ws := in.Windows; ws != nil && ws.Packing {
		fmt.Fprintf(w, "\ntraining packs into %d window(s) of %d tokens, %.1f%% filled\n", ws.Count, ws.Context, 100*ws.Fill)
	} else if ws != nil {
		fmt.Fprintf(w, "\nwithout packing, training takes %d window(s) of %d tokens, %.1f%% filled\n", ws.Count, ws.Context, 100*ws.Fill)
	}

	fmt.Fprintln(w)
	switch {
	case rep.EvalSplit != "separate eval data":
		if cfg.EvalRatio > 0 {
			fmt.Fprintln(w, "leakage: no exact leak possible (the split keeps each prompt on one side)")
		}
	case rep.Leaks == 0:
		fmt.Fprintln(w, "leakage: no eval prompt appears in training")
	default:
		fmt.Fprintf(w, "leakage: %d training records ask an eval prompt, e.g.:\n", rep.Leaks)
		for _, l := range rep.LeakList {
			fmt.Fprintf(w, "  %s = %s\n", l.Train, l.Eval)
		}
	}
	switch {
	case rep.NearDuplicate == 0:
	case rep.NearLeaks == 0 && rep.LeakedEval == 0:
		fmt.Fprintf(w, "near duplicates: no eval prompt has one in training (similarity %g)\n", rep.NearDuplicate)
	default:
		fmt.Fprintf(w, "near duplicates: %d of %d eval prompts have an exact or near duplicate (similarity %g) in training: %d training records, e.g.:\n", rep.LeakedEval, rep.Eval.Records, rep.NearDuplicate, rep.NearLeaks)
		for _, l := range rep.NearLeakList {
			fmt.Fprintf(w, "  %s %q\n  ~ %s %q (%.2f)\n", l.Train, l.TrainText, l.Eval, l.EvalText, l.Similarity)
		}
	}
	if rep.LeaksDropped > 0 {
		fmt.Fprintf(w, "left out of training (dedupe near): %d records\n", rep.LeaksDropped)
	} else if rep.Leaks+rep.NearLeaks > 0 {
		fmt.Fprintln(w, "  (data.dedupe: near, or --dedupe near, leaves them out of training)")
	}
	printLabels(w, rep.Labels)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "bad rows skipped: %d\n", len(rep.Skipped))
		for _, e := range rep.Skipped {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}

	if in.Model == "" {
		fmt.Fprintln(w, "token lengths, truncation and the rendered example need --model")
		if in.Record != nil {
			fmt.Fprintf(w, "\nrecord %s:\n", in.Record.Source)
			for _, msg := range in.Record.Messages {
				fmt.Fprintf(w, "  %-9s %s\n", msg.Role, strings.ReplaceAll(msg.Content, "\n", "\n            "))
			}
			if in.Record.Text != "" {
				fmt.Fprintf(w, "  %s\n", in.Record.Text)
			}
		}
		return
	}
	printLengths(w, &rep.Train.Lengths, rep.MaxLength)
	if ex := in.Example; ex != nil {
		open, shut, how := "«", "»", "between « and »"
		if color {
			open, shut, how = "\x1b[1;4;32m", "\x1b[0m", "in green"
		}
		fmt.Fprintf(w, "\nexample %s: %d tokens, %d trained (%s):\n", ex.Source, len(ex.Tokens), ex.Trained, how)
		for _, s := range ex.Segments {
			if s.Trained {
				fmt.Fprint(w, open+s.Text+shut)
			} else {
				fmt.Fprint(w, s.Text)
			}
		}
		fmt.Fprintln(w)
	}
}

// printLabels describes the labels: how many, records per label, the
// labels on one side only, the imbalance.
func printLabels(w io.Writer, l *datasets.LabelReport) {
	if l == nil {
		return
	}
	if l.TooMany {
		fmt.Fprintf(w, "labels: more than %d distinct values: free text rather than a label set\n", l.Labels)
		return
	}
	fmt.Fprintf(w, "labels: %d (training records per label: min %d, median %d, max %d; imbalance max/min %.1f)\n", l.Labels, l.Min, l.Median, l.Max, l.Imbalance)
	var small []string
	for _, c := range l.Smallest {
		small = append(small, fmt.Sprintf("%s %d", c.Label, c.Records))
	}
	fmt.Fprintf(w, "  fewest training records: %s\n", strings.Join(small, ", "))
	if l.OnlyEvalN > 0 {
		fmt.Fprintf(w, "  only in eval (training never shows them): %d: %s\n", l.OnlyEvalN, listMore(l.OnlyEval, l.OnlyEvalN))
	}
	if l.OnlyTrainN > 0 {
		fmt.Fprintf(w, "  only in training (eval never asks them): %d: %s\n", l.OnlyTrainN, listMore(l.OnlyTrain, l.OnlyTrainN))
	}
	if l.Unlabelled > 0 {
		fmt.Fprintf(w, "  records without a label: %d\n", l.Unlabelled)
	}
}

func listMore(some []string, n int) string {
	s := strings.Join(some, ", ")
	if n > len(some) {
		s += fmt.Sprintf(", … (%d more)", n-len(some))
	}
	return s
}

// printLengths draws the histogram of training example lengths.
func printLengths(w io.Writer, l *datasets.Lengths, ctx int) {
	if l.Count == 0 {
		return
	}
	fmt.Fprintf(w, "\ntoken lengths of training examples: min %d, median %d, p90 %d, p99 %d, max %d, mean %.1f\n", l.Min, l.P50, l.P90, l.P99, l.Max, l.Mean)
	most := 0
	for _, b := range l.Buckets {
		most = max(most, b.Count)
	}
	width := len(fmt.Sprint(l.Buckets[len(l.Buckets)-1].Hi))
	for _, b := range l.Buckets {
		bar := strings.Repeat("█", (b.Count*40+most-1)/most)
		note := ""
		if ctx > 0 && b.Hi > ctx {
			note = fmt.Sprintf("  (over the context of %d)", ctx)
		}
		fmt.Fprintf(w, "  %*d–%-*d %-40s %d%s\n", width, b.Lo, width, b.Hi, bar, b.Count, note)
	}
}

func fileList(files []string) string {
	switch len(files) {
	case 0:
		return "-"
	case 1:
		return files[0]
	case 2, 3:
		return strings.Join(files, ", ")
	}
	return fmt.Sprintf("%s, %s, … %s (%d files)", files[0], files[1], files[len(files)-1], len(files))
}

func stringKeys(m map[datasets.Format]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[string(k)] = v
	}
	return out
}
