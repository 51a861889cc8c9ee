package runs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/recipes"
)

// replay is a contestant that gives the teacher's answers back, so that
// the eval suite's judge scores them as it scores any contestant's.
type replay struct {
	name    string
	answers map[string]string // by case source
}

func (p *replay) Name() string { return p.name }
func (p *replay) Info() evals.Info {
	return evals.Info{Kind: "distilled", Model: p.name, Concurrency: 1}
}
func (p *replay) Answer(_ context.Context, c evals.Case) (evals.Answer, error) {
	a, ok := p.answers[c.Source]
	if !ok {
		return evals.Answer{}, errors.New("no distilled answer for " + c.Source)
	}
	return evals.Answer{Text: a, FinishReason: evals.FinishStop}, nil
}

// judgeRows scores every row's answer with distill.filters.judge and the
// rubric, and leaves out those scored below min_score (and those the judge
// gave no score), counting both. The verdicts are cached with the
// teacher's answers.
func judgeRows(ctx context.Context, r *recipes.Recipe, o DistillOptions, rows []DistilledRow, rep *DistillReport) ([]DistilledRow, error) {
	f := r.Distill.Filters
	var judge evals.Contestant
	for i, c := range r.Eval.Contestants {
		if c.Name != f.Judge {
			continue
		}
		if c.Kind != "ollama" && c.Kind != "openai" {
			return nil, &recipes.Error{File: r.Path, Line: r.Line("distill.filters.judge"), Path: "distill.filters.judge",
				Msg: fmt.Sprintf("%q is a %s contestant: the distill judge is an ollama or openai one", c.Name, c.Kind)}
		}
		var err error
		if judge, err = contestant(r, i, c, "", "", nil); err != nil {
			return nil, err
		}
	}
	name := "distilled"
	if name == f.Judge {
		name = "distilled-answers"
	}
	rp := &replay{name: name, answers: map[string]string{}}
	cases := make([]evals.Case, len(rows))
	for i, row := range rows {
		n := len(row.Messages) - 1
		src := row.Distill.Source + "#" + strconv.Itoa(row.Distill.Sample)
		cases[i] = evals.Case{Prompt: row.Messages[:n], Source: src, Reference: "(none: grade the answer by the rubric alone)"}
		rp.answers[src] = row.Messages[n].Content
	}
	res, err := evals.Run(ctx, evals.Suite{Cases: cases, Metrics: []evals.Metric{{Name: "judge", Kind: evals.JudgeRubric, Judge: judge, Rubric: f.Rubric}}},
		[]evals.Contestant{rp}, evals.RunOptions{CacheDir: o.CacheDir, Progress: o.Progress, Logger: o.Logger, Bootstrap: 1})
	if err != nil {
		return nil, err
	}
	var kept []DistilledRow
	for i, row := range rows {
		s, ok := res.Cases[i].Answers[0].Scores["judge"]
		switch {
		case !ok || math.IsNaN(s):
			rep.Filtered.NotJudged++
		case s < f.MinScore:
			rep.Filtered.JudgedLow++
		default:
			row.Distill.JudgeScore = &s
			kept = append(kept, row)
		}
	}
	return kept, nil
}
