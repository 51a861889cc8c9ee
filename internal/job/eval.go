package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/recipes"
)

// Cases are the recipe's eval cases, rendered with the base model's chat
// template exactly as training rendered them.
func Cases(r *recipes.Recipe, basePath string) ([]datasets.Case, error) {
	m, err := llama.LoadModel(basePath, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	cfg := DataConfig(r)
	rend, err := datasets.NewRenderer(m, cfg.RenderOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Path, err)
	}
	var cases []datasets.Case
	_, err = datasets.Scan(cfg, nil, func(it datasets.Item) error {
		if it.Split != datasets.EvalSplit || (r.Eval.MaxCases > 0 && len(cases) >= r.Eval.MaxCases) {
			return nil
		}
		c, err := rend.Case(it.Record)
		if errors.Is(err, datasets.ErrNoCase) {
			return nil
		}
		if err != nil {
			return err
		}
		cases = append(cases, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%s: the eval split holds no case", r.Path)
	}
	return cases, nil
}

// EvalOptions of an eval run.
type EvalOptions struct {
	Adapter  string // the adapter of "tuned" contestants
	Out      string // report folder
	RunDir   string // training run whose loss curve the report draws
	Base     basemodel.Options
	Progress func(evals.Progress)
	Logger   *slog.Logger // evals.RunOptions.Logger
}

// Eval runs the recipe's eval suite and writes the reports into o.Out.
func Eval(ctx context.Context, r *recipes.Recipe, o EvalOptions) (*evals.Results, error) {
	base, err := basemodel.Resolve(ctx, r.Base, r.Dir, o.Base)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
	}
	cases, err := Cases(r, base)
	if err != nil {
		return nil, err
	}
	var contestants []evals.Contestant
	byName := map[string]evals.Contestant{}
	defer func() {
		for _, c := range contestants {
			if l, ok := c.(*evals.Local); ok {
				l.Close()
			}
		}
	}()
	for i, c := range r.Eval.Contestants {
		ec, err := contestant(r, i, c, base, o.Adapter)
		if err != nil {
			return nil, err
		}
		contestants = append(contestants, ec)
		byName[c.Name] = ec
	}
	var metrics []evals.Metric
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
		metrics = append(metrics, em)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	res, err := evals.Run(ctx, evals.Suite{Cases: cases, Metrics: metrics}, contestants, evals.RunOptions{
		Base:     r.Eval.Contestants[0].Name,
		CacheDir: filepath.Join(o.Out, "cache"),
		Progress: o.Progress,
		Seed:     r.Train.Seed,
		Logger:   o.Logger,
	})
	if err != nil {
		return nil, err
	}
	extras := evals.ReportExtras{Title: "Evaluation: " + r.Name, Notes: []string{"recipe " + r.Path, "base " + r.Base + " (" + base + ")", time.Now().Format("2006-01-02 15:04")}}
	if o.RunDir != "" {
		extras.Notes = append(extras.Notes, "run "+o.RunDir)
		if loss, err := evals.LoadLossCurve(filepath.Join(o.RunDir, MetricsFile)); err == nil {
			extras.Loss = loss
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
	switch c.Kind {
	case "ollama":
		return evals.NewOllama(c.Name, evals.OllamaOptions{Host: c.Host, Model: c.Model, Settings: s, Concurrency: c.Concurrency, Price: price})
	case "openai":
		return evals.NewOpenAI(c.Name, evals.OpenAIOptions{BaseURL: c.BaseURL, Model: c.Model, APIKeyEnv: c.APIKeyEnv, Settings: s, Concurrency: c.Concurrency, Price: price})
	}
	model := base
	if c.Model != "" {
		model = r.Resolve(c.Model)
	}
	o := evals.LocalOptions{Model: model, Settings: s, Threads: r.Train.Threads}
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
