package evals

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/finetune-dev/finetune/internal/atomicfile"
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
// (created if needed), each atomically.
func WriteReports(dir string, r *Results, x ReportExtras) error {
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
	return fmt.Sprintf("%.3f [%.3f, %.3f]", s.Value, s.Low, s.High)
}

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

func fmtCost(c float64) string {
	switch {
	case c == 0:
		return "$0"
	case c < 0.01:
		return fmt.Sprintf("$%.4f", c)
	}
	return fmt.Sprintf("$%.2f", c)
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
	fmt.Fprintf(&b, "# %s\n\n", x.Title)
	for _, n := range x.Notes {
		fmt.Fprintf(&b, "%s  \n", n)
	}
	fmt.Fprintf(&b, "%d cases, %d contestants, base **%s**; 95%% confidence intervals from %d paired bootstrap resamples (* : the interval excludes 0). Created %s.\n\n",
		len(r.Cases), len(r.Contestants), r.Base, r.Bootstrap, r.Created.Format("2006-01-02 15:04 UTC"))
	for _, c := range r.Contestants {
		if c.Status != "ok" {
			fmt.Fprintf(&b, "> **%s failed**: %s\n\n", c.Name, c.Error)
		}
	}
	b.WriteString("## Headline\n\n| metric |")
	for _, c := range r.Contestants {
		fmt.Fprintf(&b, " %s |", mdCell(c.Name))
	}
	b.WriteString("\n|---|")
	for range r.Contestants {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, col := range r.columnNames() {
		fmt.Fprintf(&b, "| %s |", col)
		for _, c := range r.Contestants {
			s, ok := c.Scores[col]
			fmt.Fprintf(&b, " %s |", fmtScore(s, ok))
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "| Δ %s vs %s |", col, r.Base)
		for _, c := range r.Contestants {
			if c.Name == r.Base {
				b.WriteString(" |")
				continue
			}
			fmt.Fprintf(&b, " %s |", fmtDiff(r.Compare(c.Name, r.Base, col)))
		}
		b.WriteString("\n")
	}
	row := func(label string, f func(c *ContestantResult) string) {
		fmt.Fprintf(&b, "| %s |", label)
		for i := range r.Contestants {
			fmt.Fprintf(&b, " %s |", f(&r.Contestants[i]))
		}
		b.WriteString("\n")
	}
	row("status", func(c *ContestantResult) string { return c.Status })
	row("answered / failed", func(c *ContestantResult) string { return fmt.Sprintf("%d / %d", c.Answered, c.Failed) })
	row("cost (this run)", func(c *ContestantResult) string { return fmt.Sprintf("%s (%s)", fmtCost(c.Cost), fmtCost(c.Spent)) })
	row("tokens in / out", func(c *ContestantResult) string {
		return fmt.Sprintf("%d / %d", c.Usage.PromptTokens, c.Usage.CompletionTokens)
	})
	row("latency p50 / p95", func(c *ContestantResult) string {
		return fmt.Sprintf("%.0f / %.0f ms", c.LatencyP50MS, c.LatencyP95MS)
	})
	row("from cache", func(c *ContestantResult) string { return fmt.Sprint(c.Cached) })
	b.WriteString("\n## Contestants\n\n| name | kind | model | settings |\n|---|---|---|---|\n")
	for _, c := range r.Contestants {
		model := c.Model
		if len(c.Adapters) > 0 {
			model += " + " + strings.Join(c.Adapters, " + ")
		}
		set, _ := json.Marshal(c.Settings)
		fmt.Fprintf(&b, "| %s | %s | %s | `%s` |\n", mdCell(c.Name), c.Kind, mdCell(model), set)
	}
	b.WriteString("\n## Comparisons\n\n| contestant | against | column | difference [95% CI] | wins / ties / losses | cases |\n|---|---|---|---|---|---|\n")
	for i := range r.Comparisons {
		c := &r.Comparisons[i]
		if c.N == 0 {
			continue // a contestant without answers; its failure is reported above
		}
		wtl := fmt.Sprintf("%d / %d / %d", c.Wins, c.Ties, c.Losses)
		if m := r.metricOf(c.Column); m != nil && c.Column != m.Name {
			wtl = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", mdCell(c.Contestant), mdCell(c.Against), c.Column, fmtDiff(c), wtl, c.N)
	}
	for _, m := range r.Metrics {
		if m.Kind != Label {
			continue
		}
		for _, c := range r.Contestants {
			cm := c.Confusion[m.Name]
			if cm == nil {
				continue
			}
			fmt.Fprintf(&b, "\n### Confusion matrix: %s, %s\n\n| reference \\ answer |", m.Name, mdCell(c.Name))
			for _, p := range cm.Predicted {
				fmt.Fprintf(&b, " %s |", mdCell(p))
			}
			b.WriteString("\n|---|")
			for range cm.Predicted {
				b.WriteString("---|")
			}
			b.WriteString("\n")
			for i, l := range cm.Labels {
				fmt.Fprintf(&b, "| %s |", mdCell(l))
				for _, n := range cm.Counts[i] {
					fmt.Fprintf(&b, " %d |", n)
				}
				b.WriteString("\n")
			}
		}
	}
	if len(r.Judges) > 0 {
		b.WriteString("\n## Judges\n\n| judge | model | calls | from cache | failed | tokens in / out | cost |\n|---|---|---|---|---|---|---|\n")
		for _, j := range r.Judges {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d / %d | %s |\n", mdCell(j.Name), mdCell(j.Model), j.Calls, j.Cached, j.Failed, j.Usage.PromptTokens, j.Usage.CompletionTokens, fmtCost(j.Cost))
		}
	}
	// Cases where the first column tells the contestants apart.
	if cols := r.columnNames(); len(cols) > 0 {
		col := cols[0]
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
		fmt.Fprintf(&b, "\n## Cases where %s differs (%d of %d)\n\n", col, len(differ), len(r.Cases))
		const shown = 20
		for k, i := range differ {
			if k == shown {
				fmt.Fprintf(&b, "… and %d more: report.html and results.json hold every case.\n", len(differ)-shown)
				break
			}
			c := r.Cases[i]
			fmt.Fprintf(&b, "**Case %d** (%s): %s  \nreference: %s\n\n", i+1, c.Source, mdCell(clipText(promptText(c.Prompt), 300)), mdCell(clipText(c.Reference, 300)))
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
				fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(a.Contestant), v, mdCell(clipText(text, 300)))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
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
	Notes                       []string
	NCases                      int
	Bootstrap                   int
	Contestants                 []ContestantResult
	Headline                    []headRow
	Stats                       []statRow
	Charts                      []template.HTML
	Loss                        template.HTML
	Comparisons                 []cmpRow
	Confusions                  []confusionView
	Judges                      []JudgeResult
	Columns                     []string
	Cases                       []caseView
	Failures                    []ContestantResult
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
	DiffText, WTL string
	Sig           int
}

type confusionView struct {
	Metric, Contestant string
	*Confusion
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

func htmlReport(r *Results, x ReportExtras) ([]byte, error) {
	d := htmlData{Title: x.Title, Notes: x.Notes, Created: r.Created.Format("2006-01-02 15:04 UTC"), Base: r.Base, Tuned: x.Tuned,
		NCases: len(r.Cases), Bootstrap: r.Bootstrap, Contestants: r.Contestants, Judges: r.Judges, Columns: r.columnNames()}
	for _, c := range r.Contestants {
		if c.Status != "ok" {
			d.Failures = append(d.Failures, c)
		}
	}
	for _, col := range d.Columns {
		row := headRow{Column: col}
		for _, c := range r.Contestants {
			s, ok := c.Scores[col]
			cell := headCell{Score: fmtScore(s, ok)}
			if c.Name != r.Base {
				cmp := r.Compare(c.Name, r.Base, col)
				cell.Diff, cell.Sig = "Δ "+fmtDiff(cmp), sigOf(cmp)
			}
			row.Cells = append(row.Cells, cell)
		}
		d.Headline = append(d.Headline, row)
		d.Charts = append(d.Charts, barChart(r, col))
	}
	stat := func(label string, f func(c *ContestantResult) string) {
		row := statRow{Label: label}
		for i := range r.Contestants {
			row.Cells = append(row.Cells, f(&r.Contestants[i]))
		}
		d.Stats = append(d.Stats, row)
	}
	stat("answered / failed", func(c *ContestantResult) string { return fmt.Sprintf("%d / %d", c.Answered, c.Failed) })
	stat("cost (spent this run)", func(c *ContestantResult) string { return fmt.Sprintf("%s (%s)", fmtCost(c.Cost), fmtCost(c.Spent)) })
	stat("tokens in / out", func(c *ContestantResult) string {
		return fmt.Sprintf("%d / %d", c.Usage.PromptTokens, c.Usage.CompletionTokens)
	})
	stat("latency p50 / p95", func(c *ContestantResult) string {
		return fmt.Sprintf("%.0f / %.0f ms", c.LatencyP50MS, c.LatencyP95MS)
	})
	stat("from cache", func(c *ContestantResult) string { return fmt.Sprint(c.Cached) })
	if len(x.Loss) > 1 {
		d.Loss = lossChart(x.Loss)
	}
	for i := range r.Comparisons {
		c := r.Comparisons[i]
		if c.N == 0 {
			continue
		}
		row := cmpRow{Comparison: c, DiffText: fmtDiff(&c), Sig: sigOf(&c), WTL: fmt.Sprintf("%d / %d / %d", c.Wins, c.Ties, c.Losses)}
		if m := r.metricOf(c.Column); m != nil && c.Column != m.Name {
			row.WTL = "–"
		}
		d.Comparisons = append(d.Comparisons, row)
	}
	for _, m := range r.Metrics {
		for _, c := range r.Contestants {
			if cm := c.Confusion[m.Name]; cm != nil {
				d.Confusions = append(d.Confusions, confusionView{m.Name, c.Name, cm})
			}
		}
	}
	for _, c := range r.Cases {
		cv := caseView{Index: c.Index + 1, Source: c.Source, Prompt: c.Prompt, Reference: c.Reference, Label: c.Label}
		scores := map[string]map[string]float64{}
		for _, a := range c.Answers {
			scores[a.Contestant] = a.Scores
			av := answerView{Contestant: a.Contestant, Error: a.Error, Text: highlight(a.Text, c.Reference)}
			av.Meta = fmt.Sprintf("%d+%d tokens, %.0f ms", a.Usage.PromptTokens, a.Usage.CompletionTokens, a.LatencyMS)
			if a.Cached {
				av.Meta += ", cached"
			}
			if a.Retries > 0 {
				av.Meta += fmt.Sprintf(", %d retries", a.Retries)
			}
			for _, col := range d.Columns {
				if v, ok := a.Scores[col]; ok {
					cls := "mid"
					if m := r.metricOf(col); m != nil {
						switch {
						case v >= m.Max:
							cls = "good"
						case v <= 0 || (m.Max > 1 && v <= 1):
							cls = "bad"
						}
					}
					av.Scores = append(av.Scores, scoreBadge{col, fmt.Sprintf("%.3g", v), cls})
				}
				if t, ok := a.Details[col]; ok {
					av.Details = append(av.Details, detailView{col, t})
				}
			}
			cv.Answers = append(cv.Answers, av)
		}
		b, _ := json.Marshal(scores)
		cv.ScoresJSON = string(b)
		d.Cases = append(d.Cases, cv)
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{"base": filepath.Base}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<script>
window.addEventListener("error", function (e) {
  document.documentElement.setAttribute("data-errors", (document.documentElement.getAttribute("data-errors") || "") + e.message + "; ");
});
</script>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.diff { display: block; font-size: 12px; color: #555; } .up { color: #137333; font-weight: 600; } .down { color: #b3261e; font-weight: 600; }
.failed { background: #fdecea; border: 1px solid #f5c2bd; padding: 8px 12px; margin: 8px 0; }
.note { color: #555; margin: 2px 0; }
.chart { margin: 4px 16px 4px 0; } .ct { font-size: 13px; font-weight: 600; } .cl { font-size: 12px; } .ci { stroke: #222; stroke-width: 1.3; } .axis { stroke: #999; }
.charts { display: flex; flex-wrap: wrap; }
.controls { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #ddd; z-index: 1; }
.case { border: 1px solid #ddd; border-radius: 6px; margin: 12px 0; padding: 8px 12px; }
.case[hidden] { display: none; }
.msg { white-space: pre-wrap; margin: 2px 0; } .role { color: #777; font-size: 12px; text-transform: uppercase; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 8px; margin-top: 8px; }
.ans { background: #fafafa; border: 1px solid #eee; padding: 6px 8px; border-radius: 4px; }
.ans pre, .ref pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; font: 13px/1.4 ui-monospace, monospace; }
.ref { background: #eef5ff; border: 1px solid #d4e4fb; padding: 6px 8px; border-radius: 4px; margin-top: 6px; }
mark { background: #ffe08a; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-right: 4px; background: #eee; }
.badge.good { background: #d7f0dc; } .badge.bad { background: #f9d6d3; }
.err { color: #b3261e; white-space: pre-wrap; } .meta { color: #777; font-size: 11px; }
details { font-size: 12px; color: #444; } details pre { white-space: pre-wrap; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
<p class="note">{{.NCases}} cases · base <b>{{.Base}}</b> · 95% confidence intervals from {{.Bootstrap}} paired bootstrap resamples (differences in <span class="up">green</span> or <span class="down">red</span> exclude 0) · {{.Created}}</p>
{{range .Failures}}<div class="failed"><b>{{.Name}} failed:</b> {{.Error}} ({{.Answered}} answered, {{.Failed}} failed; its scores cover only what it answered)</div>{{end}}

<h2>Headline</h2>
<table id="headline">
<thead><tr><th>metric</th>{{range .Contestants}}<th>{{.Name}}<br><span class="meta" title="{{.Model}}{{range .Adapters}} + {{.}}{{end}}">{{.Kind}} · {{base .Model}}{{if .Adapters}} + {{len .Adapters}} adapter{{if gt (len .Adapters) 1}}s{{end}}{{end}}</span></th>{{end}}</tr></thead>
<tbody>
{{range .Headline}}<tr><th>{{.Column}}</th>{{range .Cells}}<td class="num">{{.Score}}{{if .Diff}}<span class="diff {{if eq .Sig 1}}up{{else if eq .Sig -1}}down{{end}}">{{.Diff}}</span>{{end}}</td>{{end}}</tr>
{{end}}{{range .Stats}}<tr><th>{{.Label}}</th>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>

<h2>Charts</h2>
<div class="charts">{{range .Charts}}{{.}}{{end}}{{if .Loss}}{{.Loss}}{{end}}</div>

<h2>Comparisons</h2>
<table id="comparisons">
<thead><tr><th>contestant</th><th>against</th><th>column</th><th>difference [95% CI]</th><th>wins / ties / losses</th><th>cases</th></tr></thead>
<tbody>{{range .Comparisons}}<tr><td>{{.Contestant}}</td><td>{{.Against}}</td><td>{{.Column}}</td><td class="num {{if eq .Sig 1}}up{{else if eq .Sig -1}}down{{end}}">{{.DiffText}}</td><td class="num">{{.WTL}}</td><td class="num">{{.N}}</td></tr>
{{end}}</tbody>
</table>
{{range .Confusions}}{{$c := .}}
<h3>Confusion matrix: {{.Metric}}, {{.Contestant}}</h3>
<table class="confusion"><thead><tr><th>reference \ answer</th>{{range .Predicted}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range $i, $l := .Labels}}<tr><th>{{$l}}</th>{{range index $c.Counts $i}}<td class="num">{{.}}</td>{{end}}</tr>{{end}}</tbody></table>
{{end}}
{{if .Judges}}<h2>Judges</h2>
<table><thead><tr><th>judge</th><th>model</th><th>calls</th><th>from cache</th><th>failed</th><th>tokens in / out</th><th>cost</th></tr></thead>
<tbody>{{range .Judges}}<tr><td>{{.Name}}</td><td>{{.Model}}</td><td class="num">{{.Calls}}</td><td class="num">{{.Cached}}</td><td class="num">{{.Failed}}</td><td class="num">{{.Usage.PromptTokens}} / {{.Usage.CompletionTokens}}</td><td class="num">{{printf "$%.4f" .Cost}}</td></tr>{{end}}</tbody></table>{{end}}

<h2>Cases</h2>
<div class="controls">
<label>show cases where <select id="who">{{range .Contestants}}<option{{if eq .Name $.Tuned}} selected{{end}}>{{.Name}}</option>{{end}}</select></label>
<label>scores <select id="how"><option value="all">anything</option><option value="better">better than</option><option value="worse">worse than</option><option value="same">the same as</option></select></label>
<label><b>{{.Base}}</b> on <select id="col">{{range .Columns}}<option>{{.}}</option>{{end}}</select></label>
· <span id="shown">{{.NCases}}</span> of {{.NCases}} cases shown
</div>
<div id="cases" data-base="{{.Base}}">
{{range .Cases}}<section class="case" id="case-{{.Index}}" data-scores="{{.ScoresJSON}}">
<div class="meta">case {{.Index}}{{if .Source}} · {{.Source}}{{end}}{{if .Label}} · label <b>{{.Label}}</b>{{end}}</div>
{{range .Prompt}}<div class="msg"><span class="role">{{.Role}}</span> {{.Content}}</div>{{end}}
<div class="ref"><span class="role">reference</span><pre>{{.Reference}}</pre></div>
<div class="answers">{{range .Answers}}<div class="ans" data-contestant="{{.Contestant}}"><b>{{.Contestant}}</b> {{range .Scores}}<span class="badge {{.Class}}">{{.Column}} {{.Value}}</span>{{end}}
{{if .Error}}<div class="err">{{.Error}}</div>{{else}}<pre>{{.Text}}</pre>{{end}}
<div class="meta">{{.Meta}}</div>
{{range .Details}}<details><summary>{{.Column}}</summary><pre>{{.Text}}</pre></details>{{end}}
</div>{{end}}</div>
</section>
{{end}}</div>
<script>
(function () {
  var who = document.getElementById("who"), how = document.getElementById("how"), col = document.getElementById("col");
  var base = document.getElementById("cases").getAttribute("data-base");
  var cases = Array.prototype.slice.call(document.querySelectorAll("section.case"));
  var scores = cases.map(function (c) { return JSON.parse(c.getAttribute("data-scores")); });
  function value(s, name, column) { var m = s[name]; return m && typeof m[column] === "number" ? m[column] : null; }
  function apply() {
    var shown = 0;
    cases.forEach(function (c, i) {
      var a = value(scores[i], who.value, col.value), b = value(scores[i], base, col.value), show = true;
      if (how.value !== "all") {
        show = a !== null && b !== null && (how.value === "better" ? a > b : how.value === "worse" ? a < b : a === b);
      }
      c.hidden = !show;
      if (show) shown++;
    });
    document.getElementById("shown").textContent = shown;
    var h = "c=" + encodeURIComponent(who.value) + "&m=" + encodeURIComponent(col.value) + "&f=" + how.value;
    if (location.hash.slice(1) !== h && how.value !== "all") history.replaceState(null, "", "#" + h);
  }
  // The filter can be given in the address: #c=tuned&m=accuracy&f=better
  location.hash.slice(1).split("&").forEach(function (kv) {
    var p = kv.split("="), v = decodeURIComponent(p[1] || "");
    var sel = { c: who, m: col, f: how }[p[0]];
    if (sel && Array.prototype.some.call(sel.options, function (o) { return (o.value || o.text) === v; })) sel.value = v;
  });
  [who, how, col].forEach(function (s) { s.addEventListener("change", apply); });
  apply();
  document.documentElement.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
`))
