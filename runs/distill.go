package runs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/recipes"
)

// DistillOptions of Distill.
type DistillOptions struct {
	// Out is the run folder to make (default Root/<name>/<timestamp>).
	Out string
	// Root holds the runs of every recipe (default "runs").
	Root string
	// CacheDir keeps the teacher's answers and the judge's verdicts
	// (default Root/<name>/DistillCacheDir): an interrupted or repeated
	// distillation of the recipe asks nothing twice.
	CacheDir string
	Logger   *slog.Logger
	Progress func(evals.Progress)
}

func (o *DistillOptions) defaults(r *recipes.Recipe) {
	if o.Root == "" {
		o.Root = "runs"
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.Root, r.Name, DistillCacheDir)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DistillReport is distill-report.json: what the teacher was asked, what
// it answered and cost, and what the filters left out.
type DistillReport struct {
	Created          time.Time `json:"created"`
	PromptFiles      []string  `json:"prompt_files"`
	Prompts          int       `json:"prompts"`
	AnswersPerPrompt int       `json:"answers_per_prompt"`
	Teacher          Teacher   `json:"teacher"`
	// Requests are prompts × answers; Answered of them got an answer
	// (Cached from the cache), Failed none (errors, the budget spent).
	Requests int `json:"requests"`
	Answered int `json:"answered"`
	Cached   int `json:"cached"`
	Failed   int `json:"failed"`
	// Status is ok (every request answered), partial or failed; Error
	// says why for the others.
	Status string      `json:"status"`
	Error  string      `json:"error,omitempty"`
	Usage  evals.Usage `json:"usage"`
	// CostUSD is the price of every answer; SpentUSD of those asked in
	// this distillation (not from the cache).
	CostUSD  float64 `json:"cost_usd"`
	SpentUSD float64 `json:"spent_usd"`
	// WallSeconds is the distillation's time; AskedPerMinute the answers
	// not taken from the cache per minute of it.
	WallSeconds    float64        `json:"wall_seconds"`
	AskedPerMinute float64        `json:"asked_per_minute"`
	Filtered       DistillFilters `json:"filtered"`
	// Rows are the answers written to File, the training data.
	Rows int    `json:"rows"`
	File string `json:"file"`
}

// Teacher is the contestant that answered, as the report shows it (never
// its key).
type Teacher struct {
	Name     string         `json:"name"`
	Kind     string         `json:"kind"`
	Model    string         `json:"model"`
	Endpoint string         `json:"endpoint,omitempty"`
	Settings evals.Settings `json:"settings"`
	Price    evals.Price    `json:"price"`
	Retry    *evals.Retry   `json:"retry,omitempty"`
}

// DistillFilters count the answers left out, each by the first filter that
// took it.
type DistillFilters struct {
	Failed     int `json:"failed"`     // no answer
	Cut        int `json:"cut"`        // cut at max_tokens
	Empty      int `json:"empty"`      // nothing but white space
	Refusals   int `json:"refusals"`   // matched a refusal pattern
	Duplicates int `json:"duplicates"` // repeated an answer kept for the same prompt
	JudgedLow  int `json:"judged_low"` // scored below min_score by the judge
	NotJudged  int `json:"not_judged"` // the judge gave no score
}

// Total is how many answers the filters left out.
func (f DistillFilters) Total() int {
	return f.Failed + f.Cut + f.Empty + f.Refusals + f.Duplicates + f.JudgedLow + f.NotJudged
}

// String lists the filters that left answers out: "cut at max_tokens 3,
// refusals 1"; "none" when none did.
func (f DistillFilters) String() string {
	var parts []string
	for _, p := range []struct {
		what string
		n    int
	}{{"failed", f.Failed}, {"cut at max_tokens", f.Cut}, {"empty", f.Empty}, {"refusals", f.Refusals},
		{"duplicates", f.Duplicates}, {"judged low", f.JudgedLow}, {"not judged", f.NotJudged}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p.what, p.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Note is the distillation in one line, for the eval report: who wrote the
// training data, what it cost, and what the filters left out.
func (rep *DistillReport) Note() string {
	per := 0.0
	if rep.Answered > 0 {
		per = rep.CostUSD / float64(rep.Answered) * 1000
	}
	return fmt.Sprintf("training data distilled from %s (%s %s): %d of %d answers kept, %s for the teacher's answers (%s per 1,000); left out: %s",
		rep.Teacher.Name, rep.Teacher.Kind, rep.Teacher.Model, rep.Rows, rep.Requests, textfmt.USD(rep.CostUSD), textfmt.USD(per), rep.Filtered)
}

// DistillReport is the run's distill-report.json, nil when the run was not
// distilled or the file cannot be read.
func (run *Run) DistillReport() *DistillReport {
	b, err := os.ReadFile(run.Path(DistillReportFile))
	if err != nil {
		return nil
	}
	var rep DistillReport
	if json.Unmarshal(b, &rep) != nil {
		return nil
	}
	return &rep
}

// Provenance is what a distilled row says of its answer.
type Provenance struct {
	Teacher  string         `json:"teacher"`
	Kind     string         `json:"kind"`
	Model    string         `json:"model"`
	Endpoint string         `json:"endpoint,omitempty"`
	Settings evals.Settings `json:"settings"`
	// Sample is which of the prompt's answers this is (0-based); Source
	// the prompt's row.
	Sample       int         `json:"sample"`
	Source       string      `json:"source"`
	Usage        evals.Usage `json:"usage"`
	CostUSD      float64     `json:"cost_usd"`
	FinishReason string      `json:"finish_reason,omitempty"`
	LatencyMS    float64     `json:"latency_ms"`
	Cached       bool        `json:"cached,omitempty"`
	Retries      int         `json:"retries,omitempty"`
	JudgeScore   *float64    `json:"judge_score,omitempty"`
	// Time is when the distillation wrote the row.
	Time time.Time `json:"time"`
}

// DistilledRow is one row of the distilled file: an OpenAI chat record
// (the prompt and the teacher's answer) that training reads as it reads
// any, and its provenance.
type DistilledRow struct {
	Messages []datasets.Message `json:"messages"`
	Label    string             `json:"label,omitempty"`
	Distill  Provenance         `json:"distill"`
}

// DistillPrompts reads the recipe's prompts as the teacher is asked them:
// a conversation without its last assistant turn, a prompt-completion row
// without its completion, a prompt or a text row as a user turn; data.system
// given to those without a system prompt. It returns the prompts and the
// files read.
func DistillPrompts(r *recipes.Recipe) ([]evals.Case, []string, error) {
	d := r.Distill
	rd, err := datasets.Open(r.Resolve(d.Prompts), datasets.ReadOptions{Format: datasets.Format(d.Format), Prompts: true, System: r.Data.System})
	if err != nil {
		return nil, nil, &recipes.Error{File: r.Path, Line: r.Line("distill.prompts"), Path: "distill.prompts", Msg: err.Error()}
	}
	defer rd.Close()
	var cases []evals.Case
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		msgs := rec.Messages
		if rec.Format == datasets.FormatText {
			msgs = []datasets.Message{{Role: "user", Content: rec.Text}}
			if r.Data.System != "" {
				msgs = append([]datasets.Message{{Role: "system", Content: r.Data.System}}, msgs...)
			}
		}
		if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
			msgs = msgs[:n-1]
		}
		if len(msgs) == 0 || msgs[len(msgs)-1].Role != "user" || strings.TrimSpace(msgs[len(msgs)-1].Content) == "" {
			return nil, nil, fmt.Errorf("%s: the prompt does not end with a user turn that says something: nothing to ask the teacher", rec.Source)
		}
		for i := range msgs {
			msgs[i].Mask = false // the teacher sees every turn as it is
		}
		cases = append(cases, evals.Case{Prompt: msgs, Source: rec.Source, Label: rec.Label})
	}
	if len(cases) == 0 {
		return nil, nil, &recipes.Error{File: r.Path, Line: r.Line("distill.prompts"), Path: "distill.prompts", Msg: "no prompts in " + r.Resolve(d.Prompts)}
	}
	return cases, rd.Files(), nil
}

// teacherSpec is the teacher contestant of sample k: the recipe's
// contestant with distill.generation over its own, seeded with the suite's
// seed (or its own) plus k.
func teacherSpec(r *recipes.Recipe, k int) (int, recipes.Contestant) {
	d := r.Distill
	for i, c := range r.Eval.Contestants {
		if c.Name != d.Teacher {
			continue
		}
		g := c.Generation
		if d.Generation.Temperature != nil {
			g.Temperature = d.Generation.Temperature
		}
		if d.Generation.MaxTokens > 0 {
			g.MaxTokens = d.Generation.MaxTokens
		}
		if len(d.Generation.Stop) > 0 {
			g.Stop = d.Generation.Stop
		}
		if d.Generation.Seed != nil {
			g.Seed = d.Generation.Seed
		}
		seed := int64(42)
		if r.Eval.Generation.Seed != nil {
			seed = *r.Eval.Generation.Seed
		}
		if g.Seed != nil {
			seed = *g.Seed
		}
		seed += int64(k)
		g.Seed = &seed
		c.Generation = g
		return i, c
	}
	return -1, recipes.Contestant{}
}

// Distill asks the recipe's teacher every prompt (distill.answers times),
// within its budget, through the answer cache; filters the answers; and
// writes those kept, each with its provenance, into a new run folder as
// DistilledFile, with DistillReportFile. Training reads the file as any
// data file (Start with Out the returned run's folder, data.train the
// file). The folder is made only once the teacher has answered: an
// interrupted distillation (ctx cancelled) leaves no folder, and the next
// asks only what the cache does not hold. A spent budget or a teacher that
// fails part way keeps what it answered. The returned run holds its lock
// until Close.
func Distill(ctx context.Context, r *recipes.Recipe, o DistillOptions) (*Run, *DistillReport, error) {
	if !r.Distills() {
		return nil, nil, &recipes.Error{File: r.Path, Path: "distill", Msg: "the recipe has no distill section (distill.prompts and distill.teacher)"}
	}
	began := time.Now()
	o.defaults(r)
	d := r.Distill
	cases, files, err := DistillPrompts(r)
	if err != nil {
		return nil, nil, err
	}
	var refusals []*regexp.Regexp
	for _, p := range d.Filters.Refusals {
		refusals = append(refusals, regexp.MustCompile(p)) // checked with the recipe
	}
	rep := &DistillReport{PromptFiles: files, Prompts: len(cases), AnswersPerPrompt: d.Answers, Requests: len(cases) * d.Answers}
	answers := make([][]evals.CaseAnswer, d.Answers)
	var errs []string
	for k := 0; k < d.Answers; k++ {
		i, spec := teacherSpec(r, k)
		if spec.Budget > 0 {
			left := spec.Budget - time.Since(began)
			if left <= 0 {
				answers[k] = make([]evals.CaseAnswer, len(cases))
				for j := range answers[k] {
					answers[k][j].Error = fmt.Sprintf("not asked: the teacher's budget of %s ran out", spec.Budget)
				}
				errs = append(errs, answers[k][0].Error)
				continue
			}
			spec.Budget = left
		}
		c, err := contestant(r, i, spec, "", "", nil)
		if err != nil {
			return nil, nil, err
		}
		cr, ans, err := evals.Ask(ctx, cases, c, evals.RunOptions{CacheDir: o.CacheDir, Progress: o.Progress, Logger: o.Logger})
		if err != nil {
			return nil, nil, err
		}
		if k == 0 {
			rep.Teacher = Teacher{Name: cr.Name, Kind: cr.Kind, Model: cr.Model, Endpoint: cr.Endpoint, Settings: cr.Settings, Price: cr.Price, Retry: cr.Retry}
		}
		rep.Answered += cr.Answered
		rep.Cached += cr.Cached
		rep.Usage.PromptTokens += cr.Usage.PromptTokens
		rep.Usage.CompletionTokens += cr.Usage.CompletionTokens
		rep.CostUSD += cr.Cost
		rep.SpentUSD += cr.Spent
		if cr.Error != "" {
			errs = append(errs, cr.Error)
		}
		answers[k] = ans
	}
	rep.Failed = rep.Requests - rep.Answered
	switch {
	case rep.Answered == rep.Requests:
		rep.Status = "ok"
	case rep.Answered == 0:
		rep.Status = "failed"
	default:
		rep.Status = "partial"
	}
	if len(errs) > 0 {
		rep.Error = errs[0]
	}
	now := time.Now().UTC()
	rows, err := filterAnswers(ctx, r, o, cases, answers, refusals, rep, now)
	if err != nil {
		return nil, nil, err
	}
	if len(rows) == 0 {
		why := rep.Error
		if why == "" {
			why = "the filters left out every answer (" + rep.Filtered.String() + ")"
			if rep.Filtered.Cut > 0 {
				why += ": raise distill.generation.max_tokens (it is " + fmt.Sprint(rep.Teacher.Settings.MaxTokens) + "), or keep cut answers with distill.filters.keep_cut"
			}
		}
		return nil, rep, fmt.Errorf("%s: the teacher %s gave no answer to train on: %s", r.Path, d.Teacher, why)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return nil, nil, err
		}
	}
	dir, err := create(o.Out, filepath.Join(o.Root, r.Name))
	if err != nil {
		return nil, nil, err
	}
	run := &Run{Dir: dir}
	if err := run.Lock("finetune distill", o.Logger); err != nil {
		return nil, nil, err
	}
	rep.Rows, rep.File = len(rows), run.Path(DistilledFile)
	rep.Created, rep.WallSeconds = began.UTC(), time.Since(began).Seconds()
	if asked := rep.Answered - rep.Cached; asked > 0 && rep.WallSeconds > 0 {
		rep.AskedPerMinute = float64(asked) / rep.WallSeconds * 60
	}
	if err := atomicfile.Write(run.Path(DistilledFile), buf.Bytes()); err != nil {
		return run, nil, err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return run, nil, err
	}
	if err := atomicfile.Write(run.Path(DistillReportFile), append(b, '\n')); err != nil {
		return run, nil, err
	}
	o.Logger.Info("distilled", "dir", run.Dir, "prompts", rep.Prompts, "answered", rep.Answered, "cached", rep.Cached, "failed", rep.Failed,
		"kept", rep.Rows, "left_out", rep.Filtered.Total(), "cost_usd", rep.CostUSD)
	return run, rep, nil
}

// filterAnswers applies the recipe's filters to the answers, in prompt
// order, counting each answer left out in rep.Filtered, and returns the
// rows kept.
func filterAnswers(ctx context.Context, r *recipes.Recipe, o DistillOptions, cases []evals.Case, answers [][]evals.CaseAnswer,
	refusals []*regexp.Regexp, rep *DistillReport, now time.Time) ([]DistilledRow, error) {
	f := r.Distill.Filters
	seen := map[string]bool{}
	var rows []DistilledRow
	for i, c := range cases {
		prompt, _ := json.Marshal(c.Prompt)
	answer:
		for k := range answers {
			a := answers[k][i]
			text := strings.TrimSpace(a.Text)
			switch {
			case a.Error != "":
				rep.Filtered.Failed++
				continue
			case a.FinishReason == evals.FinishLength && !f.KeepCut:
				rep.Filtered.Cut++
				continue
			case text == "":
				rep.Filtered.Empty++
				continue
			}
			for _, re := range refusals {
				if re.MatchString(a.Text) {
					rep.Filtered.Refusals++
					continue answer
				}
			}
			key := string(prompt) + "\x00" + text
			if seen[key] && !f.KeepDuplicates {
				rep.Filtered.Duplicates++
				continue
			}
			seen[key] = true
			_, spec := teacherSpec(r, k)
			price := evals.Price{InputPerMillion: spec.PriceIn, OutputPerMillion: spec.PriceOut}
			msgs := append(append([]datasets.Message(nil), c.Prompt...), datasets.Message{Role: "assistant", Content: text})
			s := rep.Teacher.Settings
			s.Seed = *spec.Generation.Seed
			rows = append(rows, DistilledRow{Messages: msgs, Label: c.Label, Distill: Provenance{
				Teacher: rep.Teacher.Name, Kind: rep.Teacher.Kind, Model: rep.Teacher.Model, Endpoint: rep.Teacher.Endpoint, Settings: s,
				Sample: k, Source: c.Source, Usage: a.Usage, CostUSD: price.Cost(a.Usage), FinishReason: a.FinishReason,
				LatencyMS: a.LatencyMS, Cached: a.Cached, Retries: a.Retries, Time: now}})
		}
	}
	if f.Judge == "" || len(rows) == 0 {
		return rows, nil
	}
	return judgeRows(ctx, r, o, rows, rep)
}
