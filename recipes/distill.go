package recipes

import (
	"fmt"
	"regexp"
	"strings"
)

// Distill makes the training data from a teacher's answers (`finetune
// distill`): every prompt of Prompts is sent to the teacher, an ollama or
// openai contestant of the eval suite, and its answers, filtered, become the
// run's training data (data.train is then left out: the run's distilled
// file takes its place).
type Distill struct {
	// Prompts is the prompts' file, folder or glob, in any format data
	// reads: a conversation is asked without its last assistant turn, a
	// prompt-completion row without its completion, and a row with only a
	// "prompt" field (or a "text" one) as it is.
	Prompts string `yaml:"prompts"`
	Format  string `yaml:"format"` // as data.format; "" detects
	// Teacher names the contestant of eval.contestants (kind ollama or
	// openai) that answers: its model, host or base_url, api_key_env,
	// timeout, attempts, budget, concurrency and prices.
	Teacher string `yaml:"teacher"`
	// Answers is how many answers the teacher gives each prompt (default
	// 1); more need a temperature above 0 (each answer has its own seed).
	Answers int `yaml:"answers"`
	// Generation settings for the teacher's answers, over its own and the
	// suite's.
	Generation Generation     `yaml:"generation"`
	Filters    DistillFilters `yaml:"filters"`
}

// DistillFilters say which answers are left out of the training data; the
// distill report counts each.
type DistillFilters struct {
	// KeepCut keeps answers cut at max_tokens (default: left out, a model
	// trained on them would not learn to stop).
	KeepCut bool `yaml:"keep_cut"`
	// Refusals are regular expressions (RE2; (?i) for any case); an
	// answer one of them matches is left out. Empty answers always are.
	Refusals []string `yaml:"refusals"`
	// KeepDuplicates keeps an answer that repeats one already kept for the
	// same prompt (default: left out).
	KeepDuplicates bool `yaml:"keep_duplicates"`
	// Judge names a contestant of eval.contestants that scores every
	// answer from 1 to 5 by Rubric; an answer scored below MinScore is
	// left out.
	Judge    string  `yaml:"judge"`
	Rubric   string  `yaml:"rubric"`
	MinScore float64 `yaml:"min_score"`
}

// Distills reports whether the recipe distills its training data.
func (r *Recipe) Distills() bool { return r.Distill.Prompts != "" }

func (r *Recipe) defaultsDistill() {
	if r.Distills() && r.Distill.Answers == 0 {
		r.Distill.Answers = 1
	}
}

// checkDistill checks the distill section: prompts, a teacher that is an
// API contestant of the suite, and filters that compile.
func (r *Recipe) checkDistill() error {
	d := r.Distill
	if !r.Distills() {
		if d.Teacher != "" || d.Generation.MaxTokens != 0 || len(d.Filters.Refusals) > 0 || d.Filters.Judge != "" {
			return r.errAt("distill.prompts", "missing: the prompts' file, folder or glob the teacher answers")
		}
		return nil
	}
	if !oneOf(d.Format, dataFormats) {
		return r.errAt("distill.format", "unknown format %q (use one of %s, or leave it out to detect)", d.Format, quoteList(dataFormats))
	}
	if d.Teacher == "" {
		return r.errAt("distill.teacher", "missing: name the eval contestant (kind ollama or openai) that answers the prompts")
	}
	var teacher *Contestant
	for i := range r.Eval.Contestants {
		if r.Eval.Contestants[i].Name == d.Teacher {
			teacher = &r.Eval.Contestants[i]
		}
	}
	switch {
	case teacher == nil:
		return r.errAt("distill.teacher", "%q is not a contestant of eval.contestants: add it there (kind ollama or openai), so the eval compares the student with it", d.Teacher)
	case teacher.Kind != "ollama" && teacher.Kind != "openai":
		return r.errAt("distill.teacher", "%q is a %s contestant: a teacher is an ollama or openai one", d.Teacher, teacher.Kind)
	case d.Answers < 1:
		return r.errAt("distill.answers", "must be at least 1")
	case d.Generation.MaxTokens < 0 || (d.Generation.Temperature != nil && *d.Generation.Temperature < 0):
		return r.errAt("distill.generation", "max_tokens and temperature must not be negative")
	case len(d.Generation.Choices) > 0:
		return r.errAt("distill.generation.choices", "a teacher answers freely: choices work for local contestants only")
	}
	if d.Answers > 1 {
		temp := teacher.Generation.Temperature
		if d.Generation.Temperature != nil {
			temp = d.Generation.Temperature
		} else if temp == nil {
			temp = r.Eval.Generation.Temperature
		}
		if temp == nil || *temp == 0 {
			return r.errAt("distill.answers", "%d answers per prompt at temperature 0 are one answer %d times: set distill.generation.temperature above 0", d.Answers, d.Answers)
		}
	}
	for i, p := range d.Filters.Refusals {
		if _, err := regexp.Compile(p); err != nil {
			return r.errAt(fmt.Sprintf("distill.filters.refusals[%d]", i), "%q is not a regular expression: %v", p, err)
		}
	}
	f := d.Filters
	if f.Judge != "" {
		found := false
		for _, c := range r.Eval.Contestants {
			found = found || c.Name == f.Judge
		}
		switch {
		case !found:
			return r.errAt("distill.filters.judge", "%q is not a contestant of eval.contestants", f.Judge)
		case strings.TrimSpace(f.Rubric) == "":
			return r.errAt("distill.filters.rubric", "missing: tell the judge what an answer scored 1 and one scored 5 are")
		case f.MinScore < 1 || f.MinScore > 5:
			return r.errAt("distill.filters.min_score", "%g: the judge scores from 1 to 5", f.MinScore)
		}
	} else if f.MinScore != 0 || f.Rubric != "" {
		return r.errAt("distill.filters.judge", "missing: min_score and rubric need the judging contestant")
	}
	return nil
}
