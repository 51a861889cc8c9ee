package evals

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// ReportExtras add what the results do not hold to the reports.
type ReportExtras struct {
	// Title heads the reports (default "Evaluation").
	Title string
	// Notes are lines shown under the title (the recipe, the run folder).
	Notes []string
	// Tuned is the contestant the report's case filter starts with
	// ("tuned better / worse than base"); default: the first contestant
	// that is not the base.
	Tuned string
	// Loss is the training loss curve, drawn when given (a run folder's
	// metrics.jsonl).
	Loss []LossPoint
	// Warnings are shown under the title, marked (the run's data
	// leakage).
	Warnings []string
}

// LossPoint is one step of a training loss curve.
type LossPoint struct {
	Step    int      `json:"step"`
	Loss    float64  `json:"loss"`
	ValLoss *float64 `json:"val_loss,omitempty"`
}

// LoadLossCurve reads a training run's metrics.jsonl (one JSON object per
// optimizer step with "step", "loss" and, on validation steps, "val_loss").
func LoadLossCurve(path string) ([]LossPoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pts []LossPoint
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var p LossPoint
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		pts = append(pts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pts, nil
}

// WriteReports writes results.json, report.md and report.html into dir
// (created if needed), each atomically. Credentials that look like header
// values or URL key parameters are removed from the error texts first (Run
// has removed its contestants' keys from everything).
func WriteReports(dir string, r *Results, x ReportExtras) error {
	(&redactor{}).results(r)
	if x.Title == "" {
		x.Title = "Evaluation"
	}
	if x.Tuned == "" {
		for _, c := range r.Contestants {
			if c.Name != r.Base {
				x.Tuned = c.Name
				break
			}
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "results.json"), append(b, '\n')); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "report.md"), []byte(markdown(r, x))); err != nil {
		return err
	}
	h, err := htmlReport(r, x)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "report.html"), h)
}

// columnNames lists every score column in metric order.
func (r *Results) columnNames() []string {
	var cols []string
	for _, m := range r.Metrics {
		cols = append(cols, m.Columns...)
	}
	return cols
}

func (r *Results) metricOf(col string) *MetricInfo {
	for i := range r.Metrics {
		for _, c := range r.Metrics[i].Columns {
			if c == col {
				return &r.Metrics[i]
			}
		}
	}
	return nil
}

func fmtScore(s Score, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", s.Value, s.Low, s.High) + fmtShort(s.N, s.Asked)
}

// fmtShort marks a score or comparison over fewer cases than were asked:
// " (n=9 of 12)", else "".
func fmtShort(n, asked int) string {
	if asked == 0 || n >= asked {
		return ""
	}
	return fmt.Sprintf(" (n=%d of %d)", n, asked)
}

// fmtN is the number of cases a comparison covers: "12", or "9 of 12
// (incomplete)".
func fmtN(n, asked int) string {
	if asked == 0 || n >= asked {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%d of %d (incomplete)", n, asked)
}

// fmtStatus is a contestant's status with its counts when not ok:
// "partial: 2 of 3 answered".
func fmtStatus(c *ContestantResult) string {
	if c.Status == "ok" {
		return "ok"
	}
	return fmt.Sprintf("%s: %d of %d answered", c.Status, c.Answered, c.Asked)
}

// fmtDiff is a comparison's difference and interval, "–" when it covers
// no case.
func fmtDiff(c *Comparison) string {
	if c == nil || c.N == 0 {
		return "–"
	}
	s := fmt.Sprintf("%+.3f [%+.3f, %+.3f]", c.Diff, c.Low, c.High)
	if c.Significant() {
		s += " *"
	}
	return s
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "<br>")
}

// markdown is report.md: the headline, comparisons, costs, confusion
// matrices, and the cases where contestants disagree.
func markdown(r *Results, x ReportExtras) string {
	var b strings.Builder
	mdTitle(&b, r, x)
	mdHeadline(&b, r)
	mdContestants(&b, r)
	mdComparisons(&b, r)
	mdConfusions(&b, r)
	mdJudges(&b, r)
	mdDifferingCases(&b, r)
	return b.String()
}

// mdTitle writes the title, the notes, what the run compared and which
// contestants failed.
func mdTitle(b *strings.Builder, r *Results, x ReportExtras) {
	fmt.Fprintf(b, "# %s\n\n", x.Title)
	for _, n := range x.Notes {
		fmt.Fprintf(b, "%s  \n", n)
	}
	for _, w := range x.Warnings {
		fmt.Fprintf(b, "\n> **Warning:** %s\n", w)
	}
	fmt.Fprintf(b, "%d cases, %d contestants, base **%s**; 95%% confidence intervals from %d paired bootstrap resamples (* : the interval excludes 0). Created %s.\n\n",
		len(r.Cases), len(r.Contestants), r.Base, r.Bootstrap, r.Created.Format("2006-01-02 15:04 UTC"))
	if r.Selection != nil {
		fmt.Fprintf(b, "Cases: %s.\n\n", r.Selection)
	}
	for i := range r.Contestants {
		if c := &r.Contestants[i]; c.Status != "ok" {
			fmt.Fprintf(b, "> **%s %s**: %s (%d of %d cases answered, %d failed; its scores and comparisons cover only what it answered)\n\n",
				mdCell(c.Name), c.Status, mdCell(c.Error), c.Answered, c.Asked, c.Failed)
		}
	}
}

// mdHeadline writes the headline table: every column's score per
// contestant and its difference from the base, then status, answers, cost,
// tokens, latency and cache use.
func mdHeadline(b *strings.Builder, r *Results) {
	b.WriteString("## Headline\n\n| metric |")
	for _, c := range r.Contestants {
		fmt.Fprintf(b, " %s |", mdCell(c.Name))
	}
	b.WriteString("\n|---|")
	for range r.Contestants {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, col := range r.columnNames() {
		fmt.Fprintf(b, "| %s |", col)
		for _, c := range r.Contestants {
			s, ok := c.Scores[col]
			fmt.Fprintf(b, " %s |", fmtScore(s, ok))
		}
		b.WriteString("\n")
		fmt.Fprintf(b, "| Δ %s vs %s |", col, r.Base)
		for _, c := range r.Contestants {
			if c.Name == r.Base {
				b.WriteString(" |")
				continue
			}
			cmp := r.Compare(c.Name, r.Base, col)
			d := fmtDiff(cmp)
			if cmp != nil && cmp.N > 0 {
				d += fmtShort(cmp.N, cmp.Asked)
			}
			fmt.Fprintf(b, " %s |", d)
		}
		b.WriteString("\n")
	}
	row := func(label string, f func(c *ContestantResult) string) {
		fmt.Fprintf(b, "| %s |", label)
		for i := range r.Contestants {
			fmt.Fprintf(b, " %s |", f(&r.Contestants[i]))
		}
		b.WriteString("\n")
	}
	row("status", fmtStatus)
	row("answered / failed", func(c *ContestantResult) string { return fmt.Sprintf("%d / %d", c.Answered, c.Failed) })
	row("hit the limit", func(c *ContestantResult) string { return c.LimitText() })
	row("cost (this run)", func(c *ContestantResult) string {
		return fmt.Sprintf("%s (%s)", textfmt.USD(c.Cost), textfmt.USD(c.Spent))
	})
	row("cost per 1,000 answers", fmtPerThousand)
	row("tokens in / out", func(c *ContestantResult) string {
		return fmt.Sprintf("%d / %d", c.Usage.PromptTokens, c.Usage.CompletionTokens)
	})
	row("latency p50 / p95", func(c *ContestantResult) string {
		return fmt.Sprintf("%.0f / %.0f ms", c.LatencyP50MS, c.LatencyP95MS)
	})
	row("from cache", func(c *ContestantResult) string { return fmt.Sprint(c.Cached) })
	for i := range r.Contestants {
		if w := r.Contestants[i].LimitWarning(); w != "" {
			fmt.Fprintf(b, "\n> **Warning** %s\n", mdCell(w))
		}
	}
}

// mdContestants writes what each contestant is: kind, model and adapters,
// settings, and how patient the run was with its requests.
func mdContestants(b *strings.Builder, r *Results) {
	b.WriteString("\n## Contestants\n\n| name | kind | model | settings | requests |\n|---|---|---|---|---|\n")
	for _, c := range r.Contestants {
		model := c.Model
		if len(c.Adapters) > 0 {
			model += " + " + strings.Join(c.Adapters, " + ")
		}
		set, _ := json.Marshal(c.Settings)
		fmt.Fprintf(b, "| %s | %s | %s | `%s` | %s |\n", mdCell(c.Name), c.Kind, mdCell(model), set, fmtRetry(c.Retry))
	}
}

// fmtPerThousand is what 1,000 answers like this run's cost a contestant,
// at its price (its answers' mean cost), "–" without answers.
func fmtPerThousand(c *ContestantResult) string {
	if c.Answered == 0 {
		return "–"
	}
	return textfmt.USD(c.CostPerThousand())
}

// fmtRetry is a contestant's request policy in words, "–" for one that
// makes no requests.
func fmtRetry(rt *Retry) string {
	if rt == nil {
		return "–"
	}
	return rt.String()
}

// mdComparisons writes every pair's difference on every column with its
// interval, wins, ties and losses where a column is scored per case, and
// the cases compared, marked when fewer than were asked; a pair with no
// case both answered shows no difference.
func mdComparisons(b *strings.Builder, r *Results) {
	b.WriteString("\n## Comparisons\n\n| contestant | against | column | difference [95% CI] | wins / ties / losses | cases |\n|---|---|---|---|---|---|\n")
	for i := range r.Comparisons {
		c := &r.Comparisons[i]
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", mdCell(c.Contestant), mdCell(c.Against), c.Column, fmtDiff(c), fmtWTL(r, c), fmtN(c.N, c.Asked))
	}
}

// fmtWTL is a comparison's wins / ties / losses, "–" for a column not
// scored per case or a comparison of no case.
func fmtWTL(r *Results, c *Comparison) string {
	if m := r.metricOf(c.Column); c.N == 0 || m != nil && c.Column != m.Name {
		return "–"
	}
	return fmt.Sprintf("%d / %d / %d", c.Wins, c.Ties, c.Losses)
}

// mdConfusions writes the confusion matrix of every label metric for
// every contestant.
func mdConfusions(b *strings.Builder, r *Results) {
	for _, m := range r.Metrics {
		if m.Kind != Label {
			continue
		}
		for _, c := range r.Contestants {
			full := c.Confusion[m.Name]
			if full == nil {
				continue
			}
			cm := full.Compact()
			fmt.Fprintf(b, "\n### Confusion matrix: %s, %s\n\n", m.Name, mdCell(c.Name))
			if t := otherText(full); t != "" {
				fmt.Fprintf(b, "%s\n\n", mdCell(t))
			}
			if cm == nil {
				fmt.Fprintf(b, "%s\n", noLabelNote(full))
				continue
			}
			if len(full.Labels) > heatLarge {
				mdConfusionList(b, full)
				continue
			}
			b.WriteString("| reference \\ answer |")
			for _, p := range cm.Predicted {
				fmt.Fprintf(b, " %s |", mdCell(p))
			}
			b.WriteString("\n|---|")
			for range cm.Predicted {
				b.WriteString("---|")
			}
			b.WriteString("\n")
			for i, l := range cm.Labels {
				fmt.Fprintf(b, "| %s |", mdCell(l))
				for _, n := range cm.Counts[i] {
					fmt.Fprintf(b, " %d |", n)
				}
				b.WriteString("\n")
			}
		}
	}
}

// mdConfusionList writes a matrix of many labels as what it holds: the
// right answers, and the most frequent confusions (report.html has the
// heat map).
func mdConfusionList(b *strings.Builder, cm *Confusion) {
	type pair struct {
		ref, ans string
		n        int
	}
	var pairs []pair
	right, total := 0, 0
	for i, row := range cm.Counts {
		for j, n := range row {
			total += n
			switch {
			case j == i:
				right += n
			case n > 0:
				pairs = append(pairs, pair{cm.Labels[i], cm.Predicted[j], n})
			}
		}
	}
	slices.SortStableFunc(pairs, func(a, b pair) int { return b.n - a.n })
	fmt.Fprintf(b, "%d labels: %d of %d cases right. The most frequent confusions (report.html has the whole matrix as a heat map):\n\n| reference | answer | cases |\n|---|---|---|\n",
		len(cm.Labels), right, total)
	const shown = 20
	for k, p := range pairs {
		if k == shown {
			fmt.Fprintf(b, "| … %d more | | |\n", len(pairs)-shown)
			break
		}
		fmt.Fprintf(b, "| %s | %s | %d |\n", mdCell(p.ref), mdCell(p.ans), p.n)
	}
}

// mdJudges writes what the judges were asked and what they cost, if there
// were any.
func mdJudges(b *strings.Builder, r *Results) {
	if len(r.Judges) == 0 {
		return
	}
	b.WriteString("\n## Judges\n\n| judge | model | calls | from cache | failed | tokens in / out | cost |\n|---|---|---|---|---|---|---|\n")
	for _, j := range r.Judges {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %d / %d | %s |\n", mdCell(j.Name), mdCell(j.Model), j.Calls, j.Cached, j.Failed, j.Usage.PromptTokens, j.Usage.CompletionTokens, textfmt.USD(j.Cost))
	}
}

// mdDifferingCases writes the cases where the first column tells the
// contestants apart (the first 20), each with every answer.
func mdDifferingCases(b *strings.Builder, r *Results) {
	cols := r.columnNames()
	if len(cols) == 0 {
		return
	}
	col := cols[0]
	differ := differingCases(r, col)
	fmt.Fprintf(b, "\n## Cases where %s differs (%d of %d)\n\n", col, len(differ), len(r.Cases))
	const shown = 20
	for k, i := range differ {
		if k == shown {
			fmt.Fprintf(b, "… and %d more: report.html and results.json hold every case.\n", len(differ)-shown)
			break
		}
		mdCase(b, r.Cases[i], i, col)
	}
}

// differingCases lists the cases whose answers do not all have the same
// score on col (or lack one alike).
func differingCases(r *Results, col string) []int {
	var differ []int
	for i, c := range r.Cases {
		seen := map[string]bool{}
		for _, a := range c.Answers {
			v, ok := a.Scores[col]
			seen[fmt.Sprint(ok, v)] = true
		}
		if len(seen) > 1 {
			differ = append(differ, i)
		}
	}
	return differ
}

// mdCase writes case i: its prompt and reference, and each answer with
// its score on col.
func mdCase(b *strings.Builder, c CaseResult, i int, col string) {
	fmt.Fprintf(b, "**Case %d** (%s): %s  \nreference: %s\n\n", i+1, c.Source, mdCell(clipText(promptText(c.Prompt), 300)), mdCell(clipText(c.Reference, 300)))
	b.WriteString("| contestant | " + col + " | answer |\n|---|---|---|\n")
	for _, a := range c.Answers {
		v := "–"
		if s, ok := a.Scores[col]; ok {
			v = fmt.Sprintf("%.3g", s)
		}
		text := a.Text
		if a.Error != "" {
			text = "error: " + a.Error
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", mdCell(a.Contestant), v, mdCell(clipText(text, 300)))
	}
	b.WriteString("\n")
}

func promptText(msgs []Message) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[len(msgs)-1].Content
}

// The HTML report.

type htmlData struct {
	Title, Created, Base, Tuned string
	Selection                   string
	Notes                       []string
	Warnings                    []string
	NCases                      int
	Bootstrap                   int
	Contestants                 []ContestantResult
	Headline                    []headRow
	Stats                       []statRow
	Charts                      []template.HTML
	Loss                        template.HTML
	Comparisons                 []cmpRow
	Confusions                  []heatView
	Judges                      []JudgeResult
	Columns                     []string
	Cases                       []caseView
	Failures                    []ContestantResult
	// LimitWarnings: a line for each contestant most of whose answers hit
	// max_tokens.
	LimitWarnings []string
}

type headRow struct {
	Column string
	Cells  []headCell
}

type headCell struct {
	Score, Diff string
	Sig         int // 1 better, -1 worse, 0 neither
}

type statRow struct {
	Label string
	Cells []string
}

type cmpRow struct {
	Comparison
	DiffText, WTL, NText string
	Sig                  int
}

// otherText says what the "(other)" answers were: "not a label: 199
// (verify_my_id 40, …); no label: 3" ("" when there are none). The label
// set is the eval cases' labels.
func otherText(cm *Confusion) string {
	var parts []string
	if t := cm.NotALabelText(); t != "" {
		parts = append(parts, t+" — answers naming something that is none of the eval cases' labels")
	}
	if cm.NoLabel > 0 {
		parts = append(parts, fmt.Sprintf("no label: %d", cm.NoLabel))
	}
	return strings.Join(parts, "; ")
}

// noLabelNote says what a confusion matrix with nothing but "(other)"
// would have shown.
func noLabelNote(cm *Confusion) string {
	n := 0
	for _, row := range cm.Counts {
		for _, c := range row {
			n += c
		}
	}
	return fmt.Sprintf("No answer named one of the %d labels: all %d cases are (other).", len(cm.Labels), n)
}

type caseView struct {
	Index      int
	Source     string
	Prompt     []Message
	Reference  string
	Label      string
	ScoresJSON string
	Answers    []answerView
}

type answerView struct {
	Contestant string
	Text       template.HTML
	Error      string
	Scores     []scoreBadge
	Details    []detailView
	Meta       string
}

type scoreBadge struct {
	Column string
	Value  string
	Class  string
}

type detailView struct{ Column, Text string }

func sigOf(c *Comparison) int {
	switch {
	case c == nil || !c.Significant():
		return 0
	case c.Diff > 0:
		return 1
	}
	return -1
}

// htmlReport is report.html: htmlData filled from the results, through
// reportTemplate.
func htmlReport(r *Results, x ReportExtras) ([]byte, error) {
	d := htmlData{Title: x.Title, Notes: x.Notes, Warnings: x.Warnings, Created: r.Created.Format("2006-01-02 15:04 UTC"), Base: r.Base, Tuned: x.Tuned,
		NCases: len(r.Cases), Bootstrap: r.Bootstrap, Contestants: r.Contestants, Judges: r.Judges, Columns: r.columnNames()}
	if r.Selection != nil {
		d.Selection = r.Selection.String()
	}
	for _, c := range r.Contestants {
		if c.Status != "ok" {
			d.Failures = append(d.Failures, c)
		}
	}
	for i := range r.Contestants {
		if w := r.Contestants[i].LimitWarning(); w != "" {
			d.LimitWarnings = append(d.LimitWarnings, w)
		}
	}
	d.Headline, d.Charts = htmlHeadline(r, d.Columns)
	d.Stats = htmlStats(r)
	if len(x.Loss) > 1 {
		d.Loss = lossChart(x.Loss)
	}
	d.Comparisons = htmlComparisons(r)
	for _, m := range r.Metrics {
		sum := heatSum(r, m.Name)
		if sum == nil {
			continue
		}
		order := heatOrder(sum.Labels, sum.Counts)
		for _, c := range r.Contestants {
			if full := c.Confusion[m.Name]; full != nil && slices.Equal(full.Labels, sum.Labels) {
				d.Confusions = append(d.Confusions, heatMap(m.Name, c.Name, full, order))
			}
		}
	}
	for _, c := range r.Cases {
		d.Cases = append(d.Cases, htmlCase(r, c, d.Columns))
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// htmlHeadline is the headline table's rows, each column's score per
// contestant with its difference from the base, and each column's chart.
func htmlHeadline(r *Results, columns []string) ([]headRow, []template.HTML) {
	var rows []headRow
	var charts []template.HTML
	for _, col := range columns {
		row := headRow{Column: col}
		for _, c := range r.Contestants {
			s, ok := c.Scores[col]
			cell := headCell{Score: fmtScore(s, ok)}
			if c.Name != r.Base {
				cmp := r.Compare(c.Name, r.Base, col)
				cell.Diff, cell.Sig = "Δ "+fmtDiff(cmp), sigOf(cmp)
				if cmp != nil && cmp.N > 0 {
					cell.Diff += fmtShort(cmp.N, cmp.Asked)
				}
			}
			row.Cells = append(row.Cells, cell)
		}
		rows = append(rows, row)
		charts = append(charts, barChart(r, col))
	}
	return rows, charts
}

// htmlStats are the rows under the headline: answers, cost, tokens,
// latency and cache use per contestant.
func htmlStats(r *Results) []statRow {
	var rows []statRow
	stat := func(label string, f func(c *ContestantResult) string) {
		row := statRow{Label: label}
		for i := range r.Contestants {
			row.Cells = append(row.Cells, f(&r.Contestants[i]))
		}
		rows = append(rows, row)
	}
	stat("status", fmtStatus)
	stat("answered / failed", func(c *ContestantResult) string { return fmt.Sprintf("%d / %d", c.Answered, c.Failed) })
	stat("hit the limit", func(c *ContestantResult) string { return c.LimitText() })
	stat("requests", func(c *ContestantResult) string { return fmtRetry(c.Retry) })
	stat("cost (spent this run)", func(c *ContestantResult) string {
		return fmt.Sprintf("%s (%s)", textfmt.USD(c.Cost), textfmt.USD(c.Spent))
	})
	stat("cost per 1,000 answers", fmtPerThousand)
	stat("tokens in / out", func(c *ContestantResult) string {
		return fmt.Sprintf("%d / %d", c.Usage.PromptTokens, c.Usage.CompletionTokens)
	})
	stat("latency p50 / p95", func(c *ContestantResult) string {
		return fmt.Sprintf("%.0f / %.0f ms", c.LatencyP50MS, c.LatencyP95MS)
	})
	stat("from cache", func(c *ContestantResult) string { return fmt.Sprint(c.Cached) })
	return rows
}

// htmlComparisons are the comparisons, those over fewer cases than were
// asked marked.
func htmlComparisons(r *Results) []cmpRow {
	var rows []cmpRow
	for i := range r.Comparisons {
		c := r.Comparisons[i]
		rows = append(rows, cmpRow{Comparison: c, DiffText: fmtDiff(&c), Sig: sigOf(&c), WTL: fmtWTL(r, &c), NText: fmtN(c.N, c.Asked)})
	}
	return rows
}

// htmlCase is one case with every answer, its differences from the
// reference marked, its scores on columns as badges and the scores' details.
func htmlCase(r *Results, c CaseResult, columns []string) caseView {
	cv := caseView{Index: c.Index + 1, Source: c.Source, Prompt: c.Prompt, Reference: c.Reference, Label: c.Label}
	scores := map[string]map[string]float64{}
	for _, a := range c.Answers {
		scores[a.Contestant] = a.Scores
		av := answerView{Contestant: a.Contestant, Error: a.Error, Text: highlight(a.Text, c.Reference)}
		av.Meta = fmt.Sprintf("%d+%d tokens, %.0f ms", a.Usage.PromptTokens, a.Usage.CompletionTokens, a.LatencyMS)
		if a.FinishReason == FinishLength {
			av.Meta += ", hit max_tokens"
		}
		if a.Cached {
			av.Meta += ", cached"
		}
		if a.Retries > 0 {
			av.Meta += fmt.Sprintf(", %d retries", a.Retries)
		}
		for _, col := range columns {
			if v, ok := a.Scores[col]; ok {
				av.Scores = append(av.Scores, scoreBadge{col, fmt.Sprintf("%.3g", v), badgeClass(r.metricOf(col), v)})
			}
			if t, ok := a.Details[col]; ok {
				av.Details = append(av.Details, detailView{col, t})
			}
		}
		cv.Answers = append(cv.Answers, av)
	}
	b, _ := json.Marshal(scores)
	cv.ScoresJSON = string(b)
	return cv
}

// badgeClass colours a score v of metric m: "good" at the best score,
// "bad" at none (or the worst grade), else "mid".
func badgeClass(m *MetricInfo, v float64) string {
	if m != nil {
		switch {
		case v >= m.Max:
			return "good"
		case v <= 0 || (m.Max > 1 && v <= 1):
			return "bad"
		}
	}
	return "mid"
}

// highlight escapes an answer and marks its words that are not in the
// reference's longest common word subsequence with it.
func highlight(answer, reference string) template.HTML {
	aw, rw := splitWords(answer), splitWords(reference)
	const limit = 3000
	if len(aw) > limit || len(rw) > limit || strings.TrimSpace(reference) == "" {
		return template.HTML(template.HTMLEscapeString(answer))
	}
	key := func(w string) string { return strings.ToLower(strings.TrimSpace(w)) }
	// LCS table over words (white space runs are separate items that
	// always match).
	n, m := len(aw), len(rw)
	dp := make([][]int32, n+1)
	for i := range dp {
		dp[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if key(aw[i]) == key(rw[j]) {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n {
		w := aw[i]
		switch {
		case strings.TrimSpace(w) == "":
			b.WriteString(template.HTMLEscapeString(w))
			i++
		case j < m && key(w) == key(rw[j]):
			b.WriteString(template.HTMLEscapeString(w))
			i++
			j++
		case j < m && dp[i][j+1] >= dp[i+1][j]:
			j++
		default:
			b.WriteString(`<mark>` + template.HTMLEscapeString(w) + `</mark>`)
			i++
		}
	}
	return template.HTML(b.String())
}

// splitWords splits s into words and the white space between them.
func splitWords(s string) []string {
	var out []string
	start := 0
	inSpace := false
	for i, r := range s {
		sp := r == ' ' || r == '\n' || r == '\t' || r == '\r'
		if i > 0 && sp != inSpace {
			out = append(out, s[start:i])
			start = i
		}
		inSpace = sp
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

// barChart draws one column's scores with their confidence intervals.
func barChart(r *Results, col string) template.HTML {
	m := r.metricOf(col)
	top := 1.0
	if m != nil {
		top = m.Max
	}
	const w, rowH, left, right = 560.0, 26.0, 150.0, 90.0
	h := rowH*float64(len(r.Contestants)) + 30
	x := func(v float64) float64 { return left + (w-left-right)*math.Max(0, math.Min(v, top))/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s"><title>%s</title>`, w, h, w, h, template.HTMLEscapeString(col), template.HTMLEscapeString(col))
	fmt.Fprintf(&b, `<text x="%.0f" y="14" class="ct">%s</text>`, left, template.HTMLEscapeString(col))
	for i, c := range r.Contestants {
		y := 22 + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" class="cl">%s</text>`, left-6, y+15, template.HTMLEscapeString(c.Name))
		s, ok := c.Scores[col]
		if !ok || s.N == 0 {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="cl">no score</text>`, left+4, y+15)
			continue
		}
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="16" fill="%s"><title>%s: %.3f [%.3f, %.3f]</title></rect>`,
			left, y+3, x(s.Value)-left, palette[i%len(palette)], template.HTMLEscapeString(c.Name), s.Value, s.Low, s.High)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="ci"/>`, x(s.Low), x(s.High), y+11, y+11)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="ci"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="ci"/>`,
			x(s.Low), x(s.Low), y+6, y+16, x(s.High), x(s.High), y+6, y+16)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="cl">%.3f</text>`, w-right+6, y+15, s.Value)
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="20" y2="%.0f" class="axis"/></svg>`, left, left, h-4)
	return template.HTML(b.String())
}

// lossChart draws the training (and validation) loss.
func lossChart(pts []LossPoint) template.HTML {
	const w, h, l, r, t, bm = 560.0, 240.0, 64.0, 20.0, 20.0, 30.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.Loss), math.Max(hi, p.Loss)
		if p.ValLoss != nil {
			lo, hi = math.Min(lo, *p.ValLoss), math.Max(hi, *p.ValLoss)
		}
	}
	if hi <= lo {
		hi = lo + 1
	}
	s0, s1 := float64(pts[0].Step), float64(pts[len(pts)-1].Step)
	if s1 <= s0 {
		s1 = s0 + 1
	}
	px := func(s int) float64 { return l + (w-l-r)*(float64(s)-s0)/(s1-s0) }
	py := func(v float64) float64 { return t + (h-t-bm)*(hi-v)/(hi-lo) }
	var train, val strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&train, "%.1f,%.1f ", px(p.Step), py(p.Loss))
		if p.ValLoss != nil {
			fmt.Fprintf(&val, "%.1f,%.1f ", px(p.Step), py(*p.ValLoss))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="training loss"><title>training loss</title>`, w, h, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" class="axis"/><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" class="axis"/>`, l, l, t, h-bm, l, w-r, h-bm, h-bm)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" class="cl">%.3g</text><text x="%.0f" y="%.0f" text-anchor="end" class="cl">%.3g</text>`, l-4, t+4, hi, l-4, h-bm, lo)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="cl">step %d</text><text x="%.0f" y="%.0f" text-anchor="end" class="cl">step %d</text>`, l, h-8, pts[0].Step, w-r, h-8, pts[len(pts)-1].Step)
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"><title>training loss</title></polyline>`, strings.TrimSpace(train.String()), palette[0])
	if val.Len() > 0 {
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="5 3"><title>validation loss</title></polyline>`, strings.TrimSpace(val.String()), palette[1])
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="14" class="ct" fill="%s">training loss</text>`, l+10, palette[0])
	if val.Len() > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="14" class="ct" fill="%s">validation loss</text>`, l+130, palette[1])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// reportHTML is report.html's template: the data is an htmlData.
//
//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{"base": filepath.Base}).Parse(reportHTML))
