package recipes

import (
	"strings"
	"testing"
)

// TestDistillSection: a distill section stands in for data.train, takes its
// defaults, and each mistake in it is named with its line.
func TestDistillSection(t *testing.T) {
	distilled := strings.Replace(good, "  train: data/train.jsonl\n", "", 1) + "distill:\n  prompts: data/prompts.jsonl\n  teacher: api\n"
	r, err := Load(write(t, distilled), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Distills() || r.Distill.Answers != 1 || r.Data.Train != "" {
		t.Fatalf("distill %+v, data.train %q", r.Distill, r.Data.Train)
	}
	y, _ := r.YAML()
	if !strings.Contains(string(y), "distill:") {
		t.Fatalf("the resolved recipe leaves out the distill section:\n%s", y)
	}
	if y, _ := mustLoad(t, good).YAML(); strings.Contains(string(y), "distill:") {
		t.Fatalf("a recipe without distill shows an empty section:\n%s", y)
	}
	for _, c := range []struct{ add, want string }{
		{"  teacher: base\n", `distill.teacher: "base" is a local contestant: a teacher is an ollama or openai one`},
		{"  teacher: gpt\n", `distill.teacher: "gpt" is not a contestant of eval.contestants`},
		{"  answers: 3\n", "distill.answers: 3 answers per prompt at temperature 0 are one answer 3 times"},
		{"  filters:\n    refusals: [\"(unclosed\"]\n", `distill.filters.refusals[0]: "(unclosed" is not a regular expression`},
		{"  filters:\n    judge: api\n    min_score: 4\n", "distill.filters.rubric: missing"},
		{"  filters:\n    judge: api\n    rubric: be good\n    min_score: 7\n", "distill.filters.min_score: 7: the judge scores from 1 to 5"},
		{"  generation:\n    choices: [a, b]\n", "distill.generation.choices: a teacher answers freely"},
	} {
		body := distilled
		if strings.HasPrefix(c.add, "  teacher:") {
			body = strings.Replace(body, "  teacher: api\n", c.add, 1)
		} else {
			body += c.add
		}
		_, err := Load(write(t, body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "recipe.yaml:") {
			t.Errorf("%q: %v, want %q with its line", c.add, err, c.want)
		}
	}
	// More answers at a temperature above 0 are fine.
	if _, err := Load(write(t, distilled+"  answers: 3\n  generation:\n    temperature: 0.8\n"), nil); err != nil {
		t.Error(err)
	}
	// Without data.train and without distill: data.train is missing.
	if _, err := Load(write(t, strings.Replace(good, "  train: data/train.jsonl\n", "", 1)), nil); err == nil || !strings.Contains(err.Error(), "data.train: missing") {
		t.Errorf("no data.train, no distill: %v", err)
	}
}

func mustLoad(t *testing.T, body string) *Recipe {
	t.Helper()
	r, err := Load(write(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
