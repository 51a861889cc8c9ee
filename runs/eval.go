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
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/recipes"
)

// ErrNoCases is Cases' error when the eval split makes no case (no eval
// data, or only plain-text records).
var ErrNoCases = errors.New("the eval split holds no case")

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
		return nil, nil, fmt.Errorf("%s: %w", r.Path, ErrNoCases)
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
		return nil, nil, fmt.Errorf("%s: %w", r.Path, ErrNoCases)
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
	// Sets are --set overrides of the run's recipe for this eval only
	// (Run.Eval without Recipe): the run's recipe.yaml stays as trained,
	// and the eval's folder keeps the recipe it ran (EvalRecipeFile).
	Sets []string
}

// EvalRecipeFile, in an eval's folder, is the recipe an eval with --set
// overrides ran: the run's recipe.yaml with the overrides applied.
const EvalRecipeFile = "eval-recipe.yaml"

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
	if len(o.Sets) > 0 {
		if o.Recipe != nil {
			return nil, fmt.Errorf("give --set overrides with the recipe, not beside it")
		}
		src, err := os.ReadFile(run.Path(RecipeFile))
		if err != nil {
			return nil, err
		}
		over, err := recipes.Decode(run.Path(RecipeFile), src, o.Sets)
		if err != nil {
			return nil, err
		}
		over.Dir = run.Recipe.Dir
		r = over
	}
	r = o.onDevice(r)
	if _, err := os.Stat(run.Adapter()); err != nil {
		if run.Record.State == Finished {
			return nil, fmt.Errorf("%s: no %s in this run folder: the run finished but its adapter is gone; restore it, or train the run's recipe again with `finetune train %s`",
				run.Dir, AdapterFile, run.Path(RecipeFile))
		}
		return nil, fmt.Errorf("%s: no %s in this run folder (the training did not finish: resume it with `finetune train --resume %s`)", run.Dir, AdapterFile, run.Dir)
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
	if len(o.Sets) > 0 {
		if err := writeEvalRecipe(r, run, o); err != nil {
			return nil, err
		}
	}
	return evaluate(ctx, r, run.Base(), run, o)
}

// writeEvalRecipe records the recipe an eval with --set overrides runs in
// its folder, the overrides named on its first lines.
func writeEvalRecipe(r *recipes.Recipe, run *Run, o EvalOptions) error {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	y, err := r.YAML()
	if err != nil {
		return err
	}
	var h strings.Builder
	fmt.Fprintf(&h, "# The recipe this eval ran: %s with these overrides (for this eval only):\n", run.Path(RecipeFile))
	for _, s := range o.Sets {
		fmt.Fprintf(&h, "#   --set %s\n", textfmt.OneLine(s))
	}
	return atomicfile.Write(filepath.Join(o.Out, EvalRecipeFile), append([]byte(h.String()), y...))
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
// and OpenAI-compatible ones, and each metric with its judge. The cases
// give generation.choices "labels" its meaning (LabelSet).
func PlanEval(r *recipes.Recipe, base, adapter string, cases []datasets.Case) (*EvalPlan, error) {
	p := &EvalPlan{}
	byName := map[string]evals.Contestant{}
	labels := LabelSet(cases)
	for i, c := range r.Eval.Contestants {
		ec, err := contestant(r, i, c, base, adapter, labels)
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
	plan, err := PlanEval(r, base, o.Adapter, cases)
	if err != nil {
		return nil, err
	}
	defer plan.Close()
	if o.Logger != nil {
		if lr, err := LongReferences(base, cases, plan.Contestants); err != nil {
			o.Logger.Warn("could not compare the reference answers with max_tokens", "err", err)
		} else if lr != nil {
			lr.Warn(o.Logger)
		}
	}
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
	if len(o.Sets) > 0 {
		extras.Notes = append(extras.Notes, "overrides --set "+strings.Join(o.Sets, " --set ")+" (recipe in "+EvalRecipeFile+")")
	}
	if run != nil {
		extras.Notes = append(extras.Notes, "run "+run.Dir)
		if loss, err := evals.LoadLossCurve(run.Path(MetricsFile)); err == nil {
			extras.Loss = loss
		}
		if d := run.DistillReport(); d != nil {
			extras.Notes = append(extras.Notes, d.Note())
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
	if run != nil {
		run.trackEval(res, o.Out)
	}
	return res, nil
}

// LongRefs are the reference answers longer than a contestant's
// max_tokens, in the base's tokens: such an answer, right as it may be, is
// cut off and scored as written.
type LongRefs struct {
	Longer      int      `json:"longer"`      // references longer than MaxTokens
	Of          int      `json:"of"`          // of all
	Longest     int      `json:"longest"`     // tokens of the longest reference
	MaxTokens   int      `json:"max_tokens"`  // the smallest max_tokens they exceed
	Contestants []string `json:"contestants"` // whose max_tokens is below Longest
}

// Fits is the max_tokens that holds every reference and the end of the
// answer after it (an answer that reaches max_tokens counts as cut off).
func (l *LongRefs) Fits() int { return l.Longest + 1 }

// String is the warning as a sentence, for `finetune data inspect`.
func (l *LongRefs) String() string {
	return fmt.Sprintf("%d of %d reference answers of the eval cases are longer than max_tokens (%d, contestants %s) in the base's tokens, the longest %d: eval would cut right answers off and score them wrong; max_tokens %d fits them (eval.generation.max_tokens, or a contestant's own generation.max_tokens)",
		l.Longer, l.Of, l.MaxTokens, strings.Join(l.Contestants, ","), l.Longest, l.Fits())
}

// Warn logs the one line that says so.
func (l *LongRefs) Warn(log *slog.Logger) {
	log.Warn("reference answers are longer than max_tokens in the base's tokens: right answers will be cut off",
		"longer", fmt.Sprintf("%d of %d", l.Longer, l.Of), "longest", l.Longest, "max_tokens", l.MaxTokens,
		"contestants", strings.Join(l.Contestants, ","), "fits", fmt.Sprintf("generation.max_tokens: %d", l.Fits()))
}

// LongReferences tokenizes the cases' references with the base's
// tokenizer and compares them with every contestant's max_tokens (for an
// API contestant the base's tokens are an estimate); nil when all fit.
func LongReferences(base string, cases []datasets.Case, cs []evals.Contestant) (*LongRefs, error) {
	m, err := llama.LoadModel(base, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	lens := make([]int, len(cases))
	longest := 0
	for i, c := range cases {
		toks, err := m.Tokenize(c.Reference, false, false)
		if err != nil {
			return nil, err
		}
		lens[i] = len(toks)
		longest = max(longest, lens[i])
	}
	var lr *LongRefs
	for _, c := range cs {
		mt := c.Info().Settings.MaxTokens
		if mt <= 0 || mt >= longest {
			continue
		}
		if lr == nil {
			lr = &LongRefs{Of: len(cases), Longest: longest, MaxTokens: mt}
		}
		lr.Contestants = append(lr.Contestants, c.Name())
		lr.MaxTokens = min(lr.MaxTokens, mt)
	}
	if lr != nil {
		for _, n := range lens {
			if n > lr.MaxTokens {
				lr.Longer++
			}
		}
	}
	return lr, nil
}

// RecipeLongReferences is LongReferences for the recipe's eval
// contestants as eval would make them, without making them: no model is
// loaded, no server asked (what `finetune data inspect` checks).
func RecipeLongReferences(r *recipes.Recipe, base string, cases []datasets.Case) (*LongRefs, error) {
	labels := LabelSet(cases)
	var cs []evals.Contestant
	for _, c := range r.Eval.Contestants {
		s, err := contestantSettings(r, c, labels)
		if err != nil {
			return nil, err
		}
		if c.Kind == "local" {
			s = s.Local()
		}
		cs = append(cs, planned{c.Name, s})
	}
	return LongReferences(base, cases, cs)
}

// planned is a contestant's name and settings, for what needs no answer.
type planned struct {
	name string
	s    evals.Settings
}

func (p planned) Name() string     { return p.name }
func (p planned) Info() evals.Info { return evals.Info{Settings: p.s} }
func (p planned) Answer(context.Context, evals.Case) (evals.Answer, error) {
	return evals.Answer{}, errors.New("a planned contestant does not answer")
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
	s.Choices = suite.Choices
	if len(g.Choices) > 0 {
		s.Choices = g.Choices
	}
	return s
}

// LabelSet is what generation.choices "labels" stands for: the eval
// cases' labels (a case without one counts its reference answer, as the
// label metric does), white space around them removed, each once, sorted. Training labels are not in it:
// an answer can only be right with a label the eval cases have.
func LabelSet(cases []datasets.Case) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cases {
		l := strings.TrimSpace(c.Label)
		if l == "" {
			l = strings.TrimSpace(c.Reference)
		}
		if l != "" && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// contestantSettings are contestant c's generation settings: its own
// over the suite's, choices "labels" the labels.
func contestantSettings(r *recipes.Recipe, c recipes.Contestant, labels []string) (evals.Settings, error) {
	s := settings(c.Generation, r.Eval.Generation)
	if len(s.Choices) == 1 && s.Choices[0] == recipes.ChoicesLabels {
		if len(labels) == 0 {
			return s, &recipes.Error{File: r.Path, Line: r.Line("eval.generation.choices"), Path: "eval.generation.choices",
				Msg: "labels: the eval cases have no labels to choose from"}
		}
		s.Choices = labels
	}
	return s, nil
}

func contestant(r *recipes.Recipe, i int, c recipes.Contestant, base, adapter string, labels []string) (evals.Contestant, error) {
	s, err := contestantSettings(r, c, labels)
	if err != nil {
		return nil, err
	}
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
	o := evals.LocalOptions{Model: model, Settings: s, Threads: r.Train.Threads, Device: dev, Price: price}
	switch c.Adapter {
	case "":
	case "tuned":
		if adapter == "" {
			return nil, &recipes.Error{File: r.Path, Line: r.Line(fmt.Sprintf("eval.contestants[%d].adapter", i)), Path: fmt.Sprintf("eval.contestants[%d]", i),
				Msg: fmt.Sprintf("%q needs the tuned adapter: give --run RUN_DIR or --adapter ADAPTER.gguf", c.Name)}
		}
		o.Adapters = []evals.AdapterSpec{{Path: adapter, Scale: c.Scale}}
	case "init":
		if r.Train.Init == "" {
			return nil, &recipes.Error{File: r.Path, Line: r.Line(fmt.Sprintf("eval.contestants[%d].adapter", i)), Path: fmt.Sprintf("eval.contestants[%d]", i),
				Msg: fmt.Sprintf("%q takes the adapter the run started from, but train.init names none", c.Name)}
		}
		o.Adapters = []evals.AdapterSpec{{Path: InitAdapter(r.Resolve(r.Train.Init)), Scale: c.Scale}}
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
