package runs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/recipes"
)

// Cases are the recipe's eval cases, rendered with the base model's chat
// template exactly as training rendered them, and how they were chosen:
// every case of the eval split, or, when eval.max_cases is below its size,
// a random sample seeded by data.seed (the same cases every time),
// stratified by label (see evalStrata), in the split's order.
func Cases(r *recipes.Recipe, basePath string) ([]datasets.Case, *evals.Selection, error) {
	m, err := llama.LoadModel(basePath, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	cfg := DataConfig(r)
	rend, err := datasets.NewRenderer(m, cfg.RenderOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", r.Path, err)
	}
	var recs []datasets.Record
	_, err = datasets.Scan(cfg, nil, func(it datasets.Item) error {
		if it.Split == datasets.EvalSplit && it.Record.Messages != nil { // a plain-text record makes no case
			recs = append(recs, it.Record)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(recs) == 0 {
		return nil, nil, fmt.Errorf("%s: the eval split holds no case", r.Path)
	}
	keys, by := evalStrata(r, recs)
	chosen := sample(keys, r.Eval.MaxCases, r.Data.Seed)
	sel := &evals.Selection{Method: "all", Chosen: len(chosen), Of: len(recs)}
	if len(chosen) < len(recs) {
		sel.Method, sel.Seed = "random", r.Data.Seed
		if n := distinct(keys); n > 1 {
			sel.Method, sel.By, sel.Strata = "stratified", by, n
		}
	}
	var cases []datasets.Case
	for _, i := range chosen {
		c, err := rend.Case(recs[i])
		if errors.Is(err, datasets.ErrNoCase) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		return nil, nil, fmt.Errorf("%s: the eval split holds no case", r.Path)
	}
	sel.Chosen = len(cases)
	return cases, sel, nil
}

// evalStrata are the keys a sample of the eval records is stratified by,
// and what they are: the records' labels when any has one; else, for a
// suite with a label_accuracy metric, the references (the label it reads)
// when they look like labels (at most half as many kinds as records); else
// none, and the sample is a plain random one.
func evalStrata(r *recipes.Recipe, recs []datasets.Record) ([]string, string) {
	keys := make([]string, len(recs))
	if slices.ContainsFunc(recs, func(rec datasets.Record) bool { return rec.Label != "" }) {
		for i, rec := range recs {
			keys[i] = rec.Label
		}
		return keys, "label"
	}
	for _, m := range r.Eval.Metrics {
		if m.Name != "label_accuracy" {
			continue
		}
		for i, rec := range recs {
			keys[i] = strings.ToLower(strings.Join(strings.Fields(rec.Messages[len(rec.Messages)-1].Content), " "))
		}
		if distinct(keys) <= len(keys)/2 {
			return keys, "label (the reference answer)"
		}
		break
	}
	return make([]string, len(recs)), ""
}

func distinct(keys []string) int {
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	return len(seen)
}

// EvalCacheDir is the answer cache of the eval reports in out: what an
// interrupted eval keeps, and the next one into out resumes from.
func EvalCacheDir(out string) string { return filepath.Join(out, "cache") }

// EvalOptions of an eval.
type EvalOptions struct {
	// Recipe is the eval suite to run (default: the run's recipe). With a
	// run, its contestants are asked as the recipe says, the local ones on
	// the base the run trained on.
	Recipe *recipes.Recipe
	// Adapter is the adapter of "tuned" contestants (default: the run's).
	Adapter string
	// Out is the report folder (default: the run's eval/, else
	// runs/<name>/eval-<timestamp>).
	Out string
	// CacheDir is the answer cache (default: Out's, EvalCacheDir). The
	// trials of a sweep share one, so a contestant that does not depend on
	// the trial (an API, the base) answers once for all of them.
	CacheDir string
	Base     basemodel.Options
	Logger   *slog.Logger // the run's logger, and evals.RunOptions.Logger
	Progress func(evals.Progress)
	// Device runs the local contestants there instead of on the recipe's
	// train.device (auto, cpu, cuda[:N], a device's name).
	Device string
}

// onDevice is r with o.Device as its train.device, when given.
func (o *EvalOptions) onDevice(r *recipes.Recipe) *recipes.Recipe {
	if o.Device == "" || r == nil {
		return r
	}
	c := *r
	c.Train.Device = o.Device
	return &c
}

// Eval runs the run's eval suite (or o.Recipe's) against every contestant,
// the tuned adapter being the run's, and writes the reports (default into
// the run folder's eval/). The run is locked for it.
func (run *Run) Eval(ctx context.Context, o EvalOptions) (*evals.Results, error) {
	r := o.Recipe
	if r == nil {
		r = run.Recipe
	}
	if r == nil {
		return nil, fmt.Errorf("%s: no %s: give the recipe whose eval suite to run", run.Dir, RecipeFile)
	}
	r = o.onDevice(r)
	if _, err := os.Stat(run.Adapter()); err != nil {
		return nil, fmt.Errorf("%s: no %s in this run folder (did the training finish? resume it with `finetune train --resume %s`)", run.Dir, AdapterFile, run.Dir)
	}
	if err := run.Lock("finetune eval", o.Logger); err != nil {
		return nil, err
	}
	if o.Adapter == "" {
		o.Adapter = run.Adapter()
	}
	if o.Out == "" {
		o.Out = run.Path(EvalDir)
	}
	o.Logger = run.Logger()
	if st := run.Record.State; st != Finished && st != "" {
		o.Logger.Warn("the run is not finished: evaluating its adapter as it was at the last stop", "state", st, "steps", run.Record.Steps, "resume", "finetune train --resume "+run.Dir)
	}
	return evaluate(ctx, r, run.Base(), run, o)
}

// Eval runs a recipe's eval suite without a run (the tuned contestant, if
// any, takes o.Adapter), writing the reports into o.Out (default
// runs/<name>/eval-<timestamp>).
func Eval(ctx context.Context, r *recipes.Recipe, o EvalOptions) (*evals.Results, error) {
	r = o.onDevice(r)
	base, err := basemodel.Resolve(ctx, r.Base, r.Dir, o.Base)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
	}
	if o.Out == "" {
		o.Out = filepath.Join("runs", r.Name, "eval-"+time.Now().Format("20060102-150405"))
	}
	return evaluate(ctx, r, base, nil, o)
}

// EvalPlan is what an eval asks: the contestants and the metrics.
type EvalPlan struct {
	Contestants []evals.Contestant
	Metrics     []evals.Metric
}

// Close releases the local contestants' models.
func (p *EvalPlan) Close() {
	for _, c := range p.Contestants {
		if l, ok := c.(*evals.Local); ok {
			l.Close()
		}
	}
}

// PlanEval maps the recipe's eval section onto evals' contestants and
// metrics: local contestants on base (with adapter for "tuned"), Ollama
// and OpenAI-compatible ones, and each metric with its judge.
func PlanEval(r *recipes.Recipe, base, adapter string) (*EvalPlan, error) {
	p := &EvalPlan{}
	byName := map[string]evals.Contestant{}
	for i, c := range r.Eval.Contestants {
		ec, err := contestant(r, i, c, base, adapter)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.Contestants = append(p.Contestants, ec)
		byName[c.Name] = ec
	}
	p.Metrics = metrics(r, byName)
	return p, nil
}

func metrics(r *recipes.Recipe, byName map[string]evals.Contestant) []evals.Metric {
	var out []evals.Metric
	for _, m := range r.Eval.Metrics {
		em := evals.Metric{Name: m.Name, Normalize: m.Normalize, Pattern: m.Pattern, JSONField: m.Field, Rubric: m.Rubric, Against: m.Reference}
		switch m.Name {
		case "label_accuracy":
			em.Kind, em.Name = evals.Label, "label_accuracy"
		case "judge":
			em.Kind, em.Name = evals.JudgeRubric, "judge_rubric"
			if m.Mode == "pairwise" {
				em.Kind, em.Name = evals.JudgePairwise, "judge_pairwise"
			}
			em.Judge = byName[m.Judge]
		default:
			em.Kind = evals.MetricKind(m.Name)
		}
		out = append(out, em)
	}
	return out
}

func evaluate(ctx context.Context, r *recipes.Recipe, base string, run *Run, o EvalOptions) (*evals.Results, error) {
	cases, sel, err := Cases(r, base)
	if err != nil {
		return nil, err
	}
	plan, err := PlanEval(r, base, o.Adapter)
	if err != nil {
		return nil, err
	}
	defer plan.Close()
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	res, err := evals.Run(ctx, evals.Suite{Cases: cases, Metrics: plan.Metrics, Selection: sel}, plan.Contestants, evals.RunOptions{
		Base:     r.Eval.Contestants[0].Name,
		CacheDir: cmp.Or(o.CacheDir, EvalCacheDir(o.Out)),
		Progress: o.Progress,
		Seed:     r.Train.Seed,
		Logger:   o.Logger,
	})
	if err != nil {
		return nil, err
	}
	extras := evals.ReportExtras{Title: "Evaluation: " + r.Name, Notes: []string{"recipe " + r.Path, "base " + r.Base + " (" + base + ")", time.Now().Format("2006-01-02 15:04")}}
	if run != nil {
		extras.Notes = append(extras.Notes, "run "+run.Dir)
		if loss, err := evals.LoadLossCurve(run.Path(MetricsFile)); err == nil {
			extras.Loss = loss
		}
		if rep := run.DataReport(); rep != nil {
			if w := rep.LeakWarning(); w != "" {
				extras.Warnings = append(extras.Warnings, w)
				if o.Logger != nil {
					o.Logger.Warn(w)
				}
			} else if n := rep.LeakNote(); n != "" {
				extras.Notes = append(extras.Notes, n)
			}
		}
	}
	if err := evals.WriteReports(o.Out, res, extras); err != nil {
		return nil, err
	}
	return res, nil
}

func settings(g recipes.Generation, suite recipes.Generation) evals.Settings {
	s := evals.Settings{MaxTokens: suite.MaxTokens, Stop: suite.Stop, Temperature: *suite.Temperature, Seed: *suite.Seed}
	if g.MaxTokens > 0 {
		s.MaxTokens = g.MaxTokens
	}
	if g.Temperature != nil {
		s.Temperature = *g.Temperature
	}
	if g.Seed != nil {
		s.Seed = *g.Seed
	}
	if len(g.Stop) > 0 {
		s.Stop = g.Stop
	}
	return s
}

func contestant(r *recipes.Recipe, i int, c recipes.Contestant, base, adapter string) (evals.Contestant, error) {
	s := settings(c.Generation, r.Eval.Generation)
	price := evals.Price{InputPerMillion: c.PriceIn, OutputPerMillion: c.PriceOut}
	retry := evals.Retry{Attempts: c.Attempts, Timeout: c.Timeout, Budget: c.Budget}
	switch c.Kind {
	case "ollama":
		return evals.NewOllama(c.Name, evals.OllamaOptions{Host: c.Host, Model: c.Model, Settings: s, Concurrency: c.Concurrency, Price: price, Retry: retry})
	case "openai":
		return evals.NewOpenAI(c.Name, evals.OpenAIOptions{BaseURL: c.BaseURL, Model: c.Model, APIKeyEnv: c.APIKeyEnv, Settings: s, Concurrency: c.Concurrency,
			Price: price, Retry: retry})
	}
	model := base
	if c.Model != "" {
		model = r.Resolve(c.Model)
	}
	dev, err := ggml.PickDevice(r.Train.Device)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("train.device"), Path: "train.device", Msg: err.Error()}
	}
	o := evals.LocalOptions{Model: model, Settings: s, Threads: r.Train.Threads, Device: dev}
	switch c.Adapter {
	case "":
	case "tuned":
		if adapter == "" {
			return nil, &recipes.Error{File: r.Path, Line: r.Line(fmt.Sprintf("eval.contestants[%d].adapter", i)), Path: fmt.Sprintf("eval.contestants[%d]", i),
				Msg: fmt.Sprintf("%q needs the tuned adapter: give --run RUN_DIR or --adapter ADAPTER.gguf", c.Name)}
		}
		o.Adapters = []evals.AdapterSpec{{Path: adapter, Scale: c.Scale}}
	default:
		o.Adapters = []evals.AdapterSpec{{Path: r.Resolve(c.Adapter), Scale: c.Scale}}
	}
	return evals.NewLocal(c.Name, o)
}

// DataReport is the run's data report (data-report.json), nil when it
// cannot be read.
func (run *Run) DataReport() *datasets.Report {
	b, err := os.ReadFile(run.Path(DataReportFile))
	if err != nil {
		return nil
	}
	var rep datasets.Report
	if json.Unmarshal(b, &rep) != nil {
		return nil
	}
	return &rep
}
