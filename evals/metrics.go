package evals

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// MetricKind names how a metric scores an answer.
type MetricKind string

// The metrics. Scores are in [0, 1] except JudgeRubric's, from 1 to 5.
const (
	// ExactMatch: 1 when the normalised answer equals the normalised
	// reference.
	ExactMatch MetricKind = "exact_match"
	// Contains: 1 when the normalised answer contains the normalised
	// reference.
	Contains MetricKind = "contains"
	// Regex: 1 when the answer matches Pattern (or, with no Pattern, the
	// reference read as a regular expression).
	Regex MetricKind = "regex"
	// TokenF1: the F1 of the answer's and the reference's tokens (SQuAD's
	// definition: counted tokens in common, precision and recall).
	TokenF1 MetricKind = "token_f1"
	// RougeL: the F1 of the longest common token subsequence of answer and
	// reference (ROUGE-L, β = 1).
	RougeL MetricKind = "rouge_l"
	// Label: 1 when the label extracted from the answer (Pattern's first
	// group, or JSONField, or the whole answer) equals the case's Label
	// (else its Reference). Adds the column NAME_macro_f1 and a confusion
	// matrix.
	Label MetricKind = "label"
	// JSONValid: 1 when the answer, less surrounding white space, is one
	// JSON value.
	JSONValid MetricKind = "json_valid"
	// JudgeRubric: the Judge contestant grades each answer from 1 to 5
	// following Rubric, seeing the prompt and the reference.
	JudgeRubric MetricKind = "judge_rubric"
	// JudgePairwise: the Judge contestant says which of two answers is
	// better, the contestant's or Against's, asked in both orders to
	// cancel position bias: 1 for a win in both orders, 0.5 for a tie or
	// a split verdict, 0 for a loss in both (0.75 and 0.25 between).
	JudgePairwise MetricKind = "judge_pairwise"
	// Preference: on an eval case that is a preference pair, 1 when the
	// contestant gives the chosen answer a higher summed log-probability
	// than the rejected one (DPO's preference accuracy), else 0; scored
	// for contestants that can score given answers (Scorer: local ones),
	// without their generated answers.
	Preference MetricKind = "preference"
)

// MetricKinds lists every kind.
func MetricKinds() []MetricKind {
	return []MetricKind{ExactMatch, Contains, Regex, TokenF1, RougeL, Label, JSONValid, JudgeRubric, JudgePairwise, Preference}
}

// Normalisations applied to answers and references before comparing.
const (
	NormCase        = "case"        // fold case (Unicode)
	NormPunctuation = "punctuation" // drop punctuation and symbols (Unicode)
	NormArticles    = "articles"    // drop the English articles a, an, the
	NormWhitespace  = "whitespace"  // collapse runs of white space
	NormNone        = "none"
)

// Metric is one way to score answers.
type Metric struct {
	// Name is the column name reports and gates use ("accuracy").
	Name string
	Kind MetricKind
	// Normalize lists normalisations (NormCase, NormPunctuation,
	// NormArticles, NormWhitespace, or NormNone). Leading and trailing
	// white space is always trimmed. nil takes the kind's default:
	// white space for exact match and contains; all four for token F1
	// and ROUGE-L (SQuAD's normalisation); case and white space for
	// labels.
	Normalize []string
	// Pattern: Regex's pattern; Label's extraction pattern (its first
	// group, else its whole match, is the label).
	Pattern string
	// JSONField: Label reads the label from this field of the answer
	// parsed as JSON ("label", "result.class").
	JSONField string
	// Judge answers judge prompts (JudgeRubric, JudgePairwise). It may be
	// one of the contestants or not.
	Judge Contestant
	// Rubric tells the judge what a 1 and a 5 are (JudgeRubric).
	Rubric string
	// Against names the contestant every other one is compared with
	// (JudgePairwise; default: the base contestant).
	Against string

	re   *regexp.Regexp
	norm normalizer
}

// Columns are the score names the metric produces: its Name, and for
// labels also NAME_macro_f1.
func (m *Metric) Columns() []string {
	if m.Kind == Label {
		return []string{m.Name, m.Name + "_macro_f1"}
	}
	return []string{m.Name}
}

func (m *Metric) isJudge() bool { return m.Kind == JudgeRubric || m.Kind == JudgePairwise }

// prepare checks the metric and compiles what it needs.
func (m *Metric) prepare() error {
	if err := checkName(m.Name); err != nil || strings.Contains(m.Name, "-") {
		return fmt.Errorf("metric name %q: use letters, digits and '_', starting with a letter", m.Name)
	}
	known := false
	for _, k := range MetricKinds() {
		known = known || k == m.Kind
	}
	if !known {
		return fmt.Errorf("metric %s: unknown kind %q (choose among %v)", m.Name, m.Kind, MetricKinds())
	}
	norm := m.Normalize
	if norm == nil {
		switch m.Kind {
		case TokenF1, RougeL:
			norm = []string{NormCase, NormPunctuation, NormArticles, NormWhitespace}
		case Label:
			norm = []string{NormCase, NormWhitespace}
		default:
			norm = []string{NormWhitespace}
		}
	}
	m.norm = normalizer{}
	for _, n := range norm {
		switch n {
		case NormCase:
			m.norm.fold = true
		case NormPunctuation:
			m.norm.punct = true
		case NormArticles:
			m.norm.articles = true
		case NormWhitespace:
			m.norm.space = true
		case NormNone:
		default:
			return fmt.Errorf("metric %s: unknown normalisation %q (use %s, %s, %s, %s or %s)", m.Name, n, NormCase, NormPunctuation, NormArticles, NormWhitespace, NormNone)
		}
	}
	if m.Pattern != "" {
		re, err := regexp.Compile(m.Pattern)
		if err != nil {
			return fmt.Errorf("metric %s: pattern: %w", m.Name, err)
		}
		m.re = re
	}
	switch {
	case m.Kind == Label && m.Pattern != "" && m.JSONField != "":
		return fmt.Errorf("metric %s: give a pattern or a JSON field to extract the label, not both", m.Name)
	case m.isJudge() && m.Judge == nil:
		return fmt.Errorf("metric %s: a %s metric needs a judge contestant", m.Name, m.Kind)
	case m.Kind == JudgeRubric && strings.TrimSpace(m.Rubric) == "":
		return fmt.Errorf("metric %s: a rubric metric needs a rubric", m.Name)
	}
	return nil
}

// score scores one answer against a case (not judges). detail says what
// was compared when that helps a reader (the extracted label).
func (m *Metric) score(answer string, c *Case) (value float64, detail string, ok bool) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	switch m.Kind {
	case ExactMatch:
		return b2f(m.norm.apply(answer) == m.norm.apply(c.Reference)), "", true
	case Contains:
		return b2f(strings.Contains(m.norm.apply(answer), m.norm.apply(c.Reference))), "", true
	case Regex:
		re := m.re
		if re == nil {
			var err error
			if re, err = regexp.Compile(c.Reference); err != nil {
				return 0, "the reference is not a regular expression: " + err.Error(), false
			}
		}
		return b2f(re.MatchString(answer)), "", true
	case TokenF1:
		return tokenF1(m.norm.tokens(answer), m.norm.tokens(c.Reference)), "", true
	case RougeL:
		return rougeL(m.norm.tokens(answer), m.norm.tokens(c.Reference)), "", true
	case JSONValid:
		return b2f(json.Valid([]byte(strings.TrimSpace(answer)))), "", true
	case Label:
		pred := m.norm.apply(m.extractLabel(answer))
		return b2f(pred == m.gold(c)), pred, true
	}
	return 0, "", false
}

// gold is the case's label, normalised.
func (m *Metric) gold(c *Case) string {
	if c.Label != "" {
		return m.norm.apply(c.Label)
	}
	return m.norm.apply(c.Reference)
}

// extractLabel finds the label in an answer ("" when there is none).
func (m *Metric) extractLabel(answer string) string {
	switch {
	case m.re != nil:
		sub := m.re.FindStringSubmatch(answer)
		if sub == nil {
			return ""
		}
		if len(sub) > 1 {
			return sub[1]
		}
		return sub[0]
	case m.JSONField != "":
		var v any
		if json.Unmarshal([]byte(strings.TrimSpace(answer)), &v) != nil {
			return ""
		}
		for _, k := range strings.Split(m.JSONField, ".") {
			obj, ok := v.(map[string]any)
			if !ok {
				return ""
			}
			v = obj[k]
		}
		switch x := v.(type) {
		case string:
			return x
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			return strconv.FormatBool(x)
		}
		return ""
	}
	return answer
}

// normalizer applies a metric's normalisations.
type normalizer struct{ fold, punct, articles, space bool }

func (n normalizer) apply(s string) string {
	if n.fold {
		s = strings.ToLower(s)
	}
	if n.punct {
		s = strings.Map(func(r rune) rune {
			if unicode.IsPunct(r) || unicode.IsSymbol(r) {
				return ' '
			}
			return r
		}, s)
	}
	if n.articles {
		words := strings.Fields(s)
		kept := words[:0]
		for _, w := range words {
			if lw := strings.ToLower(w); lw != "a" && lw != "an" && lw != "the" {
				kept = append(kept, w)
			}
		}
		s = strings.Join(kept, " ")
	}
	if n.space {
		s = strings.Join(strings.Fields(s), " ")
	}
	return strings.TrimSpace(s)
}

// tokens normalises s and splits it into words at white space; every
// Chinese or Japanese character is a word of its own (those scripts do not
// separate words with spaces).
func (n normalizer) tokens(s string) []string {
	var out []string
	for _, w := range strings.Fields(n.apply(s)) {
		start := 0
		for i, r := range w {
			if unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana) {
				if start < i {
					out = append(out, w[start:i])
				}
				out = append(out, string(r))
				start = i + len(string(r))
			}
		}
		if start < len(w) {
			out = append(out, w[start:])
		}
	}
	return out
}

// tokenF1 is SQuAD's token F1: 1 when both are empty, 0 when one is.
func tokenF1(pred, ref []string) float64 {
	if len(pred) == 0 || len(ref) == 0 {
		if len(pred) == len(ref) {
			return 1
		}
		return 0
	}
	counts := map[string]int{}
	for _, t := range ref {
		counts[t]++
	}
	common := 0
	for _, t := range pred {
		if counts[t] > 0 {
			counts[t]--
			common++
		}
	}
	if common == 0 {
		return 0
	}
	p, r := float64(common)/float64(len(pred)), float64(common)/float64(len(ref))
	return 2 * p * r / (p + r)
}

// rougeL is the ROUGE-L F1: 1 when both are empty, 0 when one is.
func rougeL(pred, ref []string) float64 {
	if len(pred) == 0 || len(ref) == 0 {
		if len(pred) == len(ref) {
			return 1
		}
		return 0
	}
	l := lcsLen(pred, ref)
	if l == 0 {
		return 0
	}
	p, r := float64(l)/float64(len(pred)), float64(l)/float64(len(ref))
	return 2 * p * r / (p + r)
}

// lcsLen is the length of the longest common subsequence.
func lcsLen(a, b []string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(cur[j], prev[j+1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// macroF1 is the mean over the reference labels of each label's F1, the
// predictions being compared as given (an unextracted or unknown
// prediction counts against the reference label).
func macroF1(gold, pred []string) float64 {
	labels := map[string]bool{}
	for _, g := range gold {
		labels[g] = true
	}
	if len(labels) == 0 {
		return 0
	}
	sum := 0.0
	for l := range labels {
		tp, fp, fn := 0, 0, 0
		for i := range gold {
			switch {
			case gold[i] == l && pred[i] == l:
				tp++
			case gold[i] == l:
				fn++
			case pred[i] == l:
				fp++
			}
		}
		if tp > 0 {
			sum += 2 * float64(tp) / float64(2*tp+fp+fn)
		}
	}
	return sum / float64(len(labels))
}
