package evals

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

func metric(t *testing.T, m Metric) *Metric {
	t.Helper()
	if m.Name == "" {
		m.Name = "m"
	}
	if err := m.prepare(); err != nil {
		t.Fatal(err)
	}
	return &m
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestMetricsHandComputed checks every text metric against values worked
// out by hand, Unicode and empty answers included.
func TestMetricsHandComputed(t *testing.T) {
	for _, c := range []struct {
		kind      MetricKind
		norm      []string
		pattern   string
		answer    string
		reference string
		want      float64
	}{
		// Exact match: white space trimmed and collapsed by default, case
		// and punctuation only when asked.
		{ExactMatch, nil, "", "  Lima. ", "Lima.", 1},
		{ExactMatch, nil, "", "the  capital\nis Lima", "the capital is Lima", 1},
		{ExactMatch, nil, "", "lima.", "Lima.", 0},
		{ExactMatch, []string{NormCase}, "", "lima.", "Lima.", 1},
		{ExactMatch, []string{NormCase}, "", "ÉCOLE ÇA", "école ça", 1},
		{ExactMatch, nil, "", "Lima", "Lima.", 0},
		{ExactMatch, []string{NormPunctuation}, "", "Lima", "Lima.", 1},
		{ExactMatch, []string{NormPunctuation}, "", "«Lima»!", "Lima", 1},
		{ExactMatch, []string{NormNone}, "", "a  b", "a b", 0},
		{ExactMatch, nil, "", "", "", 1},
		{ExactMatch, nil, "", "", "x", 0},
		{ExactMatch, nil, "", "x", "", 0},
		{ExactMatch, []string{NormArticles, NormCase}, "", "The Pacific", "pacific", 1},
		// Contains.
		{Contains, nil, "", "The answer is Lima.", "Lima", 1},
		{Contains, nil, "", "The answer is lima.", "Lima", 0},
		{Contains, []string{NormCase}, "", "The answer is LIMA.", "Lima", 1},
		{Contains, nil, "", "東京です", "東京", 1},
		{Contains, nil, "", "", "Lima", 0},
		// Regex: a pattern, or the reference as a pattern.
		{Regex, nil, `(?i)^\s*(yes|no)\b`, " Yes, it is.", "", 1},
		{Regex, nil, `(?i)^\s*(yes|no)\b`, "Maybe", "", 0},
		{Regex, nil, "", "It costs 42 dollars", `\b4\d\b`, 1},
		{Regex, nil, "", "It costs 52 dollars", `\b4\d\b`, 0},
		// Token F1 (SQuAD normalisation by default: case, punctuation,
		// articles, white space).
		{TokenF1, nil, "", "the cat sat on the mat", "a cat sat on a mat", 1},
		// pred {paris is capital}, ref {capital is paris france}: 3 in
		// common, P = 1, R = 3/4, F1 = 2·(3/4)/(7/4) = 6/7.
		{TokenF1, nil, "", "Paris is the capital", "The capital is Paris, France", 6.0 / 7},
		// Repeated tokens count once per occurrence in the reference:
		// pred {a1 a1 a1 b} (4), ref {a1 b} (2): common 2, P 1/2, R 1,
		// F1 2/3.
		{TokenF1, nil, "", "a1 a1 a1 b", "a1 b", 2.0 / 3},
		// Unicode case folding: {ça va très bien} vs {ça va bien}:
		// common 3, P 3/4, R 1, F1 6/7.
		{TokenF1, nil, "", "Ça va très bien !", "ça va bien", 6.0 / 7},
		// Chinese: each character a token, order does not matter.
		{TokenF1, nil, "", "东京是首都", "首都是东京", 1},
		// {东 京} vs {东 京 都}: common 2, P 1, R 2/3, F1 0.8.
		{TokenF1, nil, "", "东京", "东京都", 0.8},
		{TokenF1, nil, "", "", "", 1},
		{TokenF1, nil, "", "", "Lima", 0},
		{TokenF1, nil, "", "Lima", "", 0},
		{TokenF1, nil, "", "!!!", "", 1}, // nothing left after normalisation on either side
		{TokenF1, nil, "", "Lima", "Tokyo", 0},
		// ROUGE-L F1: {cat sat on mat} vs {cat was on mat}: LCS 3, P = R
		// = 3/4.
		{RougeL, nil, "", "the cat sat on the mat", "the cat was on the mat", 0.75},
		// Without normalisation the articles count: LCS "the cat on the
		// mat" = 5 of 6 each side.
		{RougeL, []string{NormNone}, "", "the cat sat on the mat", "the cat was on the mat", 5.0 / 6},
		// Order matters for ROUGE-L, not for F1: LCS of 东京是首都 and
		// 首都是东京 is 2 (东京 or 首都), P = R = 2/5.
		{RougeL, nil, "", "东京是首都", "首都是东京", 0.4},
		// {b c d} vs {a b c}: LCS 2 (b c), P = R = 2/3.
		{RougeL, []string{NormNone}, "", "b c d", "a b c", 2.0 / 3},
		// With the default normalisation the article "a" goes: {b c d}
		// vs {b c}, P 2/3, R 1, F 0.8.
		{RougeL, nil, "", "b c d", "a b c", 0.8},
		{RougeL, nil, "", "", "", 1},
		{RougeL, nil, "", "x", "", 0},
		// JSON validity.
		{JSONValid, nil, "", ` {"a": [1, 2, {"b": null}]} `, "", 1},
		{JSONValid, nil, "", `[1,2]`, "", 1},
		{JSONValid, nil, "", `"just a string"`, "", 1},
		{JSONValid, nil, "", `{"a":}`, "", 0},
		{JSONValid, nil, "", `{"a":1} and more`, "", 0},
		{JSONValid, nil, "", "```json\n{\"a\":1}\n```", "", 0},
		{JSONValid, nil, "", "", "", 0},
		{JSONValid, nil, "", `{"name": "Zoë 🦙"}`, "", 1},
	} {
		m := metric(t, Metric{Kind: c.kind, Normalize: c.norm, Pattern: c.pattern})
		cs := Case{Reference: c.reference}
		got, _, ok := m.score(c.answer, &cs)
		if !ok || !near(got, c.want) {
			t.Errorf("%s %v: answer %q, reference %q: %v (ok %v), want %v", c.kind, c.norm, c.answer, c.reference, got, ok, c.want)
		}
	}
}

func TestRegexReferenceThatDoesNotCompile(t *testing.T) {
	m := metric(t, Metric{Kind: Regex})
	cs := Case{Reference: "(unclosed"}
	if _, detail, ok := m.score("anything", &cs); ok || !strings.Contains(detail, "not a regular expression") {
		t.Fatalf("a bad reference regex gave a score (detail %q)", detail)
	}
}

func TestLabelExtraction(t *testing.T) {
	for _, c := range []struct {
		m      Metric
		answer string
		gold   Case
		label  string
		want   float64
	}{
		{Metric{Kind: Label}, " Positive \n", Case{Label: "positive"}, "positive", 1},
		{Metric{Kind: Label}, "positive", Case{Reference: "Positive"}, "positive", 1}, // no label: the reference
		{Metric{Kind: Label, Pattern: `(?i)label:\s*(\w+)`}, "I think... Label: NEG because", Case{Label: "neg"}, "neg", 1},
		{Metric{Kind: Label, Pattern: `(?i)label:\s*(\w+)`}, "no idea", Case{Label: "neg"}, "", 0},
		{Metric{Kind: Label, Pattern: `positive|negative`}, "clearly negative!", Case{Label: "negative"}, "negative", 1},
		{Metric{Kind: Label, JSONField: "result.label"}, `{"result": {"label": "Sports"}}`, Case{Label: "sports"}, "sports", 1},
		{Metric{Kind: Label, JSONField: "stars"}, `{"stars": 4}`, Case{Label: "4"}, "4", 1},
		{Metric{Kind: Label, JSONField: "label"}, `label: sports`, Case{Label: "sports"}, "", 0},
		{Metric{Kind: Label, JSONField: "label"}, `{"label": ["x"]}`, Case{Label: "x"}, "", 0},
		{Metric{Kind: Label}, "Ünïcödé", Case{Label: "ünïcödé"}, "ünïcödé", 1},
	} {
		m := metric(t, c.m)
		got, label, ok := m.score(c.answer, &c.gold)
		if !ok || got != c.want || label != c.label {
			t.Errorf("%+v on %q: score %v label %q, want %v %q", c.m, c.answer, got, label, c.want, c.label)
		}
	}
}

func TestMetricValidation(t *testing.T) {
	for _, c := range []struct {
		m    Metric
		want string
	}{
		{Metric{Name: "x", Kind: "bleu"}, "unknown kind"},
		{Metric{Name: "exact-match", Kind: ExactMatch}, "metric name"},
		{Metric{Name: "x", Kind: ExactMatch, Normalize: []string{"stemming"}}, "unknown normalisation"},
		{Metric{Name: "x", Kind: Regex, Pattern: "("}, "pattern"},
		{Metric{Name: "x", Kind: Label, Pattern: "a", JSONField: "b"}, "not both"},
		{Metric{Name: "x", Kind: JudgeRubric, Rubric: "r"}, "judge"},
		{Metric{Name: "x", Kind: JudgeRubric, Judge: newScripted("j", nil)}, "rubric"},
	} {
		err := c.m.prepare()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want it to mention %q", c.m, err, c.want)
		}
	}
}

// TestLabelAccuracyMacroF1Confusion runs a label metric end to end and
// checks accuracy, macro-F1 and the confusion matrix against hand counts.
func TestLabelAccuracyMacroF1Confusion(t *testing.T) {
	gold := []string{"a", "a", "a", "b", "b", "c"}
	pred := []string{"a", "a", "b", "b", "", "c"}
	var cases []Case
	answers := map[string]string{}
	for i := range gold {
		q := fmt.Sprintf("q%d", i)
		cases = append(cases, qaCase(q, "", gold[i]))
		answers[q] = "label=" + pred[i]
	}
	model := newScripted("model", func(c Case) (string, error) { return answers[lastUser(c)], nil })
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: []Metric{{Name: "acc", Kind: Label, Pattern: `label=(\w+)`}}},
		[]Contestant{model}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Contestant("model")
	// Accuracy 4/6. Per class F1: a: tp 2, fn 1 → 4/5; b: tp 1, fp 1
	// (case 2), fn 1 (case 4) → 2/4; c: 1. Macro: (0.8 + 0.5 + 1)/3.
	if got := c.Scores["acc"].Value; !near(got, 4.0/6) {
		t.Errorf("accuracy %v, want 4/6", got)
	}
	if got := c.Scores["acc_macro_f1"].Value; !near(got, (0.8+0.5+1)/3) {
		t.Errorf("macro-F1 %v, want %v", got, (0.8+0.5+1)/3)
	}
	cm := c.Confusion["acc"]
	want := [][]int{{2, 1, 0, 0}, {0, 1, 0, 1}, {0, 0, 1, 0}}
	if fmt.Sprint(cm.Labels) != "[a b c]" || fmt.Sprint(cm.Predicted) != "[a b c (other)]" || fmt.Sprint(cm.Counts) != fmt.Sprint(want) {
		t.Errorf("confusion %v × %v = %v, want %v", cm.Labels, cm.Predicted, cm.Counts, want)
	}
	if got := res.Cases[4].Answers[0].Details["acc"]; got != "" {
		t.Errorf("case 4's extracted label %q, want none", got)
	}
}

// TestJudges: rubric grades are parsed from the judge's reply, and
// pairwise verdicts are asked in both orders, so a judge that always
// prefers the first answer shown gives a tie, and one that prefers the
// right answer gives a win in both orders.
func TestJudges(t *testing.T) {
	cases := []Case{qaCase("Capital of Peru?", "Lima", ""), qaCase("Capital of Japan?", "Tokyo", "")}
	good := newScripted("good", func(c Case) (string, error) {
		return map[string]string{"Capital of Peru?": "Lima", "Capital of Japan?": "Tokyo"}[lastUser(c)], nil
	})
	bad := newScripted("bad", func(c Case) (string, error) { return "I don't know", nil })
	answerOf := func(prompt, tag string) string {
		_, rest, _ := strings.Cut(prompt, "<"+tag+">\n")
		a, _, _ := strings.Cut(rest, "\n</"+tag+">")
		return a
	}
	grader := newScripted("grader", func(c Case) (string, error) {
		p := lastUser(c)
		if !strings.Contains(p, "Be exact.") {
			return "", fmt.Errorf("the rubric is missing from the judge prompt")
		}
		if answerOf(p, "answer") == answerOf(p, "reference_answer") {
			return "Score: 5\nExactly the reference.", nil
		}
		return "**Score:** 2/5 — wrong.", nil
	})
	fair := newScripted("fair", func(c Case) (string, error) {
		p := lastUser(c)
		ref := answerOf(p, "reference_answer")
		switch {
		case answerOf(p, "answer_A") == ref:
			return "Verdict: A\nA matches.", nil
		case answerOf(p, "answer_B") == ref:
			return "Verdict: B", nil
		}
		return "Verdict: TIE", nil
	})
	biased := newScripted("biased", func(c Case) (string, error) { return "A is better.", nil })
	metrics := []Metric{
		{Name: "grade", Kind: JudgeRubric, Judge: grader, Rubric: "5: the reference answer. 1: wrong. Be exact."},
		{Name: "pref", Kind: JudgePairwise, Judge: fair},
		{Name: "pref_biased", Kind: JudgePairwise, Judge: biased},
	}
	res, err := Run(context.Background(), Suite{Cases: cases, Metrics: metrics}, []Contestant{bad, good}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, b := res.Contestant("good"), res.Contestant("bad")
	if g.Scores["grade"].Value != 5 || b.Scores["grade"].Value != 2 {
		t.Errorf("rubric grades: good %v, bad %v; want 5 and 2", g.Scores["grade"], b.Scores["grade"])
	}
	if g.Scores["pref"].Value != 1 || g.Scores["pref"].N != 2 {
		t.Errorf("fair judge: good wins %v, want 1 over 2 cases", g.Scores["pref"])
	}
	if _, ok := b.Scores["pref"]; ok {
		t.Errorf("the base has a preference score against itself: %v", b.Scores["pref"])
	}
	if g.Scores["pref_biased"].Value != 0.5 {
		t.Errorf("a judge that always says A gives %v, want 0.5 (position bias cancelled)", g.Scores["pref_biased"].Value)
	}
	// Two verdicts per case and contestant pair, one grade per answer.
	if n := fair.calls.Load(); n != 4 {
		t.Errorf("the pairwise judge was asked %d times, want 4 (2 cases × 2 orders)", n)
	}
	if n := grader.calls.Load(); n != 4 {
		t.Errorf("the rubric judge was asked %d times, want 4", n)
	}
	if d := res.Cases[0].Answers[1].Details["pref"]; !strings.Contains(d, "shown as A") || !strings.Contains(d, "shown as B") {
		t.Errorf("pairwise detail %q lacks both verdicts", d)
	}
	var judges []string
	for _, j := range res.Judges {
		judges = append(judges, fmt.Sprintf("%s:%d", j.Name, j.Calls))
	}
	if fmt.Sprint(judges) != "[grader:4 fair:4 biased:4]" {
		t.Errorf("judges %v", judges)
	}
}

func TestParseJudgeReplies(t *testing.T) {
	for reply, want := range map[string]float64{
		"Score: 4\nGood.": 4, "score=5": 5, "**Score:** 3/5": 3, "3\nbecause": 3, "I'd give it a Score of 2": 2,
		"Score: 7": 0, "no grade here": 0, "12 apples": 0,
	} {
		got, ok := parseScore(reply)
		if (want == 0) == ok || got != want {
			t.Errorf("parseScore(%q) = %v, %v; want %v", reply, got, ok, want)
		}
	}
	for reply, want := range map[string]string{
		"Verdict: A\nbecause": "A", "verdict: tie": "TIE", "**Verdict:** B": "B", "B. It is clearer.": "B", "Verdict: [A]": "A",
		"Both are fine": "", "": "",
	} {
		got, ok := parseVerdict(reply)
		if (want == "") == ok || got != want {
			t.Errorf("parseVerdict(%q) = %q, %v; want %q", reply, got, ok, want)
		}
	}
}
