package sweeps

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/textfmt"
	"github.com/finetune-dev/finetune/runs"
)

// Leaderboard ranks a sweep's trials by its metric, each with its scores,
// their intervals and differences from the base and the API contestants,
// and its time and cost. leaderboard.json is this value.
type Leaderboard struct {
	Name         string    `json:"name"`
	Dir          string    `json:"dir"`
	Recipe       string    `json:"recipe"`
	Axes         []Axis    `json:"axes"`
	Combinations int       `json:"combinations"`
	Sample       int       `json:"sample,omitempty"`
	Executor     string    `json:"executor"`
	MaxParallel  int       `json:"max_parallel"`
	Metric       Metric    `json:"metric"`
	Updated      time.Time `json:"updated"`
	// Columns are the eval report's score columns, in metric order.
	Columns []string `json:"columns"`
	// Trials are ranked: done trials by the metric (higher first, ties by
	// index), then running, pending and failed ones.
	Trials []Row `json:"trials"`
	// Best is the index of the winning trial, nil until one is done.
	Best *int `json:"best,omitempty"`
	// Others are the contestants every trial was compared with (the base,
	// the API contestants), as the best trial's eval saw them.
	Others []evals.ContestantResult `json:"others,omitempty"`
	Counts map[string]int           `json:"counts"`
	// Warning is set when Slurm did not answer while it was made.
	Warning string `json:"warning,omitempty"`
}

// Row is one trial on the leaderboard.
type Row struct {
	Rank     int      `json:"rank,omitempty"` // 1 for the best; 0 when not ranked
	Index    int      `json:"index"`
	Settings []string `json:"settings"`
	State    string   `json:"state"`
	Error    string   `json:"error,omitempty"`
	Log      string   `json:"log,omitempty"`
	Run      string   `json:"run"`
	// Scores are the ranked contestant's (the tuned one's), VsBase their
	// differences from the base, Versus the metric column's difference
	// from every other contestant.
	Scores       map[string]evals.Score       `json:"scores,omitempty"`
	VsBase       map[string]*evals.Comparison `json:"vs_base,omitempty"`
	Versus       []*evals.Comparison          `json:"versus,omitempty"`
	Attempts     int                          `json:"attempts,omitempty"`
	ResumedFrom  int                          `json:"resumed_from,omitempty"`
	Steps        int                          `json:"steps,omitempty"`
	Threads      int                          `json:"threads,omitempty"`
	TrainSeconds float64                      `json:"train_seconds,omitempty"`
	EvalSeconds  float64                      `json:"eval_seconds,omitempty"`
	// CoreHours is (train + eval time) × threads; EvalUSD what the trial's
	// eval spent on API calls (judges; the API contestants' answers are
	// paid once for the sweep).
	CoreHours float64 `json:"core_hours,omitempty"`
	EvalUSD   float64 `json:"eval_usd"`
	Started   string  `json:"started,omitempty"`
	Ended     string  `json:"ended,omitempty"`
}

// metricValue is the row's score on the sweep's metric.
func (r *Row) metricValue(col string) (float64, bool) {
	s, ok := r.Scores[col]
	return s.Value, ok && s.N > 0
}

// Build reads every trial's state and eval results into the leaderboard.
func (s *Sweep) Build(ctx context.Context) (*Leaderboard, error) {
	trials, warn := s.Status(ctx)
	if trials == nil && warn != nil {
		return nil, warn
	}
	lb := &Leaderboard{Name: s.Spec.Name, Dir: s.Dir, Recipe: s.Spec.Recipe, Axes: s.Spec.Axes, Combinations: s.Spec.Combinations, Sample: s.Spec.Sample,
		Executor: s.Spec.Executor, MaxParallel: s.Spec.MaxParallel, Metric: s.Spec.Metric, Updated: time.Now().UTC(), Counts: map[string]int{}}
	if warn != nil {
		lb.Warning = warn.Error()
	}
	m := s.Spec.Metric
	var bestRes *evals.Results
	results := map[int]*evals.Results{}
	for _, t := range trials {
		lb.Counts[t.State]++
		row := Row{Index: t.Index, Settings: t.Sets, State: t.State, Error: t.Error, Log: t.Log, Run: s.TrialDir(t.Index)}
		if st := t.Status; st != nil {
			row.Attempts, row.ResumedFrom, row.Steps, row.Threads = st.Attempt, st.ResumedFrom, st.Steps, st.Threads
			row.TrainSeconds, row.EvalSeconds = st.TrainSeconds, st.EvalSeconds
			row.CoreHours = (st.TrainSeconds + st.EvalSeconds) * float64(max(1, st.Threads)) / 3600
			row.Started = st.Started.Format(time.RFC3339)
			if !st.Ended.IsZero() {
				row.Ended = st.Ended.Format(time.RFC3339)
			}
		}
		if t.State == Done {
			if res, err := readResults(filepath.Join(row.Run, runs.EvalDir, "results.json")); err != nil {
				row.State, row.Error = Failed, err.Error()
				lb.Counts[Done]--
				lb.Counts[Failed]++
			} else {
				results[t.Index] = res
				if c := res.Contestant(m.Contestant); c != nil {
					row.Scores = c.Scores
				}
				row.VsBase = map[string]*evals.Comparison{}
				for _, col := range columnsOf(res) {
					if c := res.Compare(m.Contestant, res.Base, col); c != nil {
						row.VsBase[col] = c
					}
				}
				for _, c := range res.Contestants {
					row.EvalUSD += c.Spent
					if c.Name != m.Contestant && c.Name != res.Base {
						if cmp := versus(res, m.Contestant, c.Name, m.Column); cmp != nil {
							row.Versus = append(row.Versus, cmp)
						}
					}
				}
				if len(lb.Columns) == 0 {
					lb.Columns = columnsOf(res)
				}
			}
		}
		lb.Trials = append(lb.Trials, row)
	}
	order := map[string]int{Done: 0, Running: 1, Pending: 2, Failed: 3}
	slices.SortStableFunc(lb.Trials, func(a, b Row) int {
		if c := cmp.Compare(order[a.State], order[b.State]); c != 0 {
			return c
		}
		av, aok := a.metricValue(m.Column)
		bv, bok := b.metricValue(m.Column)
		switch {
		case aok && !bok:
			return -1
		case !aok && bok:
			return 1
		case aok && bok && av != bv:
			return cmp.Compare(bv, av)
		}
		return cmp.Compare(a.Index, b.Index)
	})
	for i := range lb.Trials {
		r := &lb.Trials[i]
		if _, ok := r.metricValue(m.Column); ok && r.State == Done {
			r.Rank = i + 1
			if lb.Best == nil {
				idx := r.Index
				lb.Best = &idx
				bestRes = results[idx]
			}
		}
	}
	if bestRes == nil {
		for _, r := range lb.Trials {
			if res := results[r.Index]; res != nil {
				bestRes = res
				break
			}
		}
	}
	if bestRes != nil {
		for _, c := range bestRes.Contestants {
			if c.Name != m.Contestant {
				lb.Others = append(lb.Others, c)
			}
		}
	}
	return lb, nil
}

// versus is a's comparison with b on col, turned around when the eval
// compared b with a.
func versus(res *evals.Results, a, b, col string) *evals.Comparison {
	if c := res.Compare(a, b, col); c != nil {
		return c
	}
	c := res.Compare(b, a, col)
	if c == nil {
		return nil
	}
	t := *c
	t.Contestant, t.Against = a, b
	t.Diff, t.Low, t.High = -c.Diff, -c.High, -c.Low
	t.Wins, t.Losses = c.Losses, c.Wins
	return &t
}

func readResults(path string) (*evals.Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the trial is done but its eval results are unreadable: %v", err)
	}
	var r evals.Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &r, nil
}

func columnsOf(r *evals.Results) []string {
	var cols []string
	for _, m := range r.Metrics {
		cols = append(cols, m.Columns...)
	}
	return cols
}

// WriteLeaderboard builds the leaderboard and writes leaderboard.md,
// .html and .json, holding the leaderboard lock (trials that end at once
// take turns).
func (s *Sweep) WriteLeaderboard(ctx context.Context) (*Leaderboard, error) {
	return s.writeLeaderboard(ctx, nil)
}

// writeLeaderboard is WriteLeaderboard, which also sends the leaderboard
// to the sweep's MLflow run, logging to log.
func (s *Sweep) writeLeaderboard(ctx context.Context, log *slog.Logger) (*Leaderboard, error) {
	unlock, err := s.lock(LeaderboardLock, "the leaderboard", true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	lb, err := s.Build(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(lb, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(s.Path(LeaderboardJSON), append(b, '\n')); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(s.Path(LeaderboardMD), []byte(lb.Markdown())); err != nil {
		return nil, err
	}
	h, err := lb.HTML()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(s.Path(LeaderboardHTML), h); err != nil {
		return nil, err
	}
	s.trackLeaderboard(lb, log)
	return lb, nil
}

// BestRun is the run folder of the best trial.
func (lb *Leaderboard) BestRun() (string, error) {
	if lb.Best == nil {
		return "", fmt.Errorf("%s: no trial is done yet (%s): nothing to publish; see `finetune sweep status %s`", lb.Dir, lb.countsText(), lb.Dir)
	}
	for _, r := range lb.Trials {
		if r.Index == *lb.Best {
			return r.Run, nil
		}
	}
	return "", fmt.Errorf("%s: the best trial %d is not on the leaderboard", lb.Dir, *lb.Best)
}

func (lb *Leaderboard) countsText() string {
	var parts []string
	for _, st := range []string{Done, Running, Pending, Failed} {
		parts = append(parts, fmt.Sprintf("%d %s", lb.Counts[st], st))
	}
	return strings.Join(parts, ", ")
}

func fmtScore(s evals.Score, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	t := fmt.Sprintf("%.3f [%.3f, %.3f]", s.Value, s.Low, s.High)
	if s.N < s.Asked {
		t += fmt.Sprintf(" (n=%d of %d)", s.N, s.Asked)
	}
	return t
}

func fmtDiff(c *evals.Comparison) string {
	if c == nil || c.N == 0 {
		return "–"
	}
	t := fmt.Sprintf("%+.3f [%+.3f, %+.3f]", c.Diff, c.Low, c.High)
	if c.Significant() {
		t += " *"
	}
	return t
}

func sig(c *evals.Comparison) int {
	switch {
	case c == nil || !c.Significant():
		return 0
	case c.Low > 0:
		return 1
	}
	return -1
}

func fmtSeconds(s float64) string {
	if s == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", s)
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", "<br>")
}

// value is the row's value of an axis.
func (r *Row) value(key string) string {
	for _, kv := range r.Settings {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (lb *Leaderboard) summary() []string {
	var keys []string
	for _, a := range lb.Axes {
		keys = append(keys, fmt.Sprintf("%s (%d)", a.Key, len(a.Values)))
	}
	trials := fmt.Sprintf("%d trials: every combination of %s", len(lb.Trials), strings.Join(keys, " × "))
	if lb.Sample > 0 {
		trials = fmt.Sprintf("%d trials: a seeded random sample of the %d combinations of %s", len(lb.Trials), lb.Combinations, strings.Join(keys, " × "))
	}
	return []string{
		"recipe " + lb.Recipe,
		trials,
		fmt.Sprintf("executor %s, %d at once; %s", lb.Executor, lb.MaxParallel, lb.countsText()),
		fmt.Sprintf("ranked by %s (higher is better); 95%% bootstrap intervals, * : the difference's interval excludes 0; updated %s", lb.Metric, lb.Updated.Format("2006-01-02 15:04:05 UTC")),
	}
}

func (lb *Leaderboard) bestLine() string {
	if lb.Best == nil {
		return "No trial is done yet."
	}
	for _, r := range lb.Trials {
		if r.Index == *lb.Best {
			return fmt.Sprintf("Best: trial %03d (%s): %s %s, %s vs base. Publish it with `finetune publish %s --best`.",
				r.Index, strings.Join(r.Settings, " "), lb.Metric, fmtScore(r.Scores[lb.Metric.Column], true), fmtDiff(r.VsBase[lb.Metric.Column]), lb.Dir)
		}
	}
	return ""
}

// Markdown is leaderboard.md.
func (lb *Leaderboard) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Sweep: %s\n\n", lb.Name)
	for _, n := range lb.summary() {
		fmt.Fprintf(&b, "%s  \n", n)
	}
	if lb.Warning != "" {
		fmt.Fprintf(&b, "\n> **%s**\n", mdCell(lb.Warning))
	}
	fmt.Fprintf(&b, "\n%s\n\n## Trials\n\n| rank | trial |", lb.bestLine())
	for _, a := range lb.Axes {
		fmt.Fprintf(&b, " %s |", mdCell(a.Key))
	}
	b.WriteString(" state |")
	for _, col := range lb.Columns {
		fmt.Fprintf(&b, " %s (Δ vs base) |", col)
	}
	for _, o := range lb.Others {
		if o.Name != lb.othersBase() {
			fmt.Fprintf(&b, " Δ %s vs %s |", lb.Metric.Column, mdCell(o.Name))
		}
	}
	b.WriteString(" steps | train s | eval s | core-h | eval $ |\n|")
	n := 8 + len(lb.Axes) + len(lb.Columns) // rank, trial, state and the five figures

	for _, o := range lb.Others {
		if o.Name != lb.othersBase() {
			n++
		}
	}
	b.WriteString(strings.Repeat("---|", n))
	b.WriteString("\n")
	for _, r := range lb.Trials {
		rank := "–"
		if r.Rank > 0 {
			rank = fmt.Sprint(r.Rank)
		}
		fmt.Fprintf(&b, "| %s | %03d |", rank, r.Index)
		for _, a := range lb.Axes {
			fmt.Fprintf(&b, " %s |", mdCell(r.value(a.Key)))
		}
		state := r.State
		if r.ResumedFrom > 0 {
			state += fmt.Sprintf(" (resumed from step %d)", r.ResumedFrom)
		}
		fmt.Fprintf(&b, " %s |", state)
		for _, col := range lb.Columns {
			sc, ok := r.Scores[col]
			if !ok {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s<br>%s |", fmtScore(sc, ok), fmtDiff(r.VsBase[col]))
		}
		for _, o := range lb.Others {
			if o.Name == lb.othersBase() {
				continue
			}
			var c *evals.Comparison
			for _, v := range r.Versus {
				if v.Against == o.Name {
					c = v
				}
			}
			fmt.Fprintf(&b, " %s |", fmtDiff(c))
		}
		fmt.Fprintf(&b, " %s | %s | %s | %s | %s |\n", stepsText(r.Steps), fmtSeconds(r.TrainSeconds), fmtSeconds(r.EvalSeconds), coreHours(r.CoreHours), textfmt.USD(r.EvalUSD))
	}
	if len(lb.Others) > 0 {
		b.WriteString("\n## The base and the API contestants\n\nThe API contestants answered once for the whole sweep, before the trials; the base through the answer cache the trials share.\n\n| contestant | kind | model | status |")
		for _, col := range lb.Columns {
			fmt.Fprintf(&b, " %s |", col)
		}
		b.WriteString(" cost $ | p50 ms |\n|")
		b.WriteString(strings.Repeat("---|", 6+len(lb.Columns)))
		b.WriteString("\n")
		for _, o := range lb.Others {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |", mdCell(o.Name), o.Kind, mdCell(filepath.Base(o.Model)), o.Status)
			for _, col := range lb.Columns {
				sc, ok := o.Scores[col]
				fmt.Fprintf(&b, " %s |", fmtScore(sc, ok))
			}
			fmt.Fprintf(&b, " %s | %.0f |\n", textfmt.USD(o.Cost), o.LatencyP50MS)
		}
	}
	var failed []Row
	for _, r := range lb.Trials {
		if r.State == Failed {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		b.WriteString("\n## Failed trials\n\n`finetune sweep resume " + lb.Dir + "` runs them again (a trial killed while training continues from its checkpoint).\n\n| trial | settings | error | log |\n|---|---|---|---|\n")
		for _, r := range failed {
			fmt.Fprintf(&b, "| %03d | %s | %s | %s |\n", r.Index, mdCell(strings.Join(r.Settings, " ")), mdCell(r.Error), mdCell(r.Log))
		}
	}
	return b.String()
}

// othersBase is the base contestant's name among Others.
func (lb *Leaderboard) othersBase() string {
	for _, r := range lb.Trials {
		for _, c := range r.VsBase {
			if c != nil {
				return c.Against
			}
		}
	}
	if len(lb.Others) > 0 {
		return lb.Others[0].Name
	}
	return ""
}

func stepsText(n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

func coreHours(h float64) string {
	if h == 0 {
		return "–"
	}
	return fmt.Sprintf("%.4f", h)
}

//go:embed leaderboard.html.tmpl
var leaderboardTmpl string

var htmlTemplate = template.Must(template.New("leaderboard").Parse(leaderboardTmpl))

type htmlCell struct {
	Score, Diff string
	Sig         int
}

type htmlRow struct {
	Row
	RankText, StateText string
	Axes                []string
	Cells               []htmlCell
	Versus              []htmlCell
	Steps, Train, Eval  string
	CoreH, USD          string
	Best                bool
}

type htmlOther struct {
	evals.ContestantResult
	Model string
	Cells []string
	Cost  string
}

// HTML is leaderboard.html: self-contained, styled like the eval report.
func (lb *Leaderboard) HTML() ([]byte, error) {
	d := struct {
		*Leaderboard
		Summary    []string
		BestLine   string
		Rows       []htmlRow
		VersusCols []string
		OtherRows  []htmlOther
		Failed     []htmlRow
	}{Leaderboard: lb, Summary: lb.summary(), BestLine: lb.bestLine()}
	base := lb.othersBase()
	for _, o := range lb.Others {
		if o.Name != base {
			d.VersusCols = append(d.VersusCols, o.Name)
		}
		ho := htmlOther{ContestantResult: o, Model: filepath.Base(o.Model), Cost: textfmt.USD(o.Cost)}
		for _, col := range lb.Columns {
			sc, ok := o.Scores[col]
			ho.Cells = append(ho.Cells, fmtScore(sc, ok))
		}
		d.OtherRows = append(d.OtherRows, ho)
	}
	for _, r := range lb.Trials {
		h := htmlRow{Row: r, RankText: "–", StateText: r.State, Steps: stepsText(r.Steps), Train: fmtSeconds(r.TrainSeconds), Eval: fmtSeconds(r.EvalSeconds),
			CoreH: coreHours(r.CoreHours), USD: textfmt.USD(r.EvalUSD), Best: lb.Best != nil && *lb.Best == r.Index}
		if r.Rank > 0 {
			h.RankText = fmt.Sprint(r.Rank)
		}
		if r.ResumedFrom > 0 {
			h.StateText += fmt.Sprintf(" (resumed from step %d)", r.ResumedFrom)
		}
		for _, a := range lb.Axes {
			h.Axes = append(h.Axes, r.value(a.Key))
		}
		for _, col := range lb.Columns {
			sc, ok := r.Scores[col]
			c := htmlCell{Score: fmtScore(sc, ok)}
			if ok {
				c.Diff, c.Sig = fmtDiff(r.VsBase[col]), sig(r.VsBase[col])
			}
			h.Cells = append(h.Cells, c)
		}
		for _, name := range d.VersusCols {
			var c *evals.Comparison
			for _, v := range r.Versus {
				if v.Against == name {
					c = v
				}
			}
			h.Versus = append(h.Versus, htmlCell{Diff: fmtDiff(c), Sig: sig(c)})
		}
		d.Rows = append(d.Rows, h)
		if r.State == Failed {
			d.Failed = append(d.Failed, h)
		}
	}
	var buf bytes.Buffer
	if err := htmlTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
