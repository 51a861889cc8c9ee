package runs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/recipes"
)

// TestChoicesPlan: generation.choices "labels" is the eval cases' label
// set, a list is taken as it is, a contestant's own choices win over the
// suite's, and an API contestant given choices is refused at the recipe
// check in one line.
func TestChoicesPlan(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	cases := []datasets.Case{{Reference: "Intent: refund", Label: "refund"}, {Reference: " top_up\n"}, {Reference: "x", Label: "card_lost"}, {Reference: "y", Label: "refund"}}
	if got := fmt.Sprint(LabelSet(cases)); got != "[card_lost refund top_up]" {
		t.Fatalf("label set %s", got)
	}
	r := recipe(t, dir, minimal+`eval:
  generation: {max_tokens: 8, choices: labels}
  contestants:
    - {name: base}
    - {name: listed, generation: {choices: [yes, "no, never"]}}
`)
	p, err := PlanEval(r, model, "", cases)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := fmt.Sprint(p.Contestants[0].Info().Settings.Choices); got != "[card_lost refund top_up]" {
		t.Errorf("base's choices %s", got)
	}
	if got := fmt.Sprint(p.Contestants[1].Info().Settings.Choices); got != "[yes no, never]" {
		t.Errorf("listed's choices %s", got)
	}
	if _, err := PlanEval(r, model, "", []datasets.Case{{}}); err == nil || !strings.Contains(err.Error(), "no labels") {
		t.Errorf("labels without any: %v", err)
	}

	for _, body := range []string{
		"eval:\n  generation: {choices: labels}\n  contestants:\n    - {name: base}\n    - {name: api, kind: openai, model: m, base_url: \"http://127.0.0.1:1/v1\"}\n",
		"eval:\n  contestants:\n    - {name: base}\n    - {name: served, kind: ollama, model: m, generation: {choices: [a, b]}}\n",
	} {
		_, err := recipes.Decode(dir+"/recipe.yaml", []byte(minimal+body), nil)
		if err == nil || !strings.Contains(err.Error(), "choices (constrained decoding) work for local contestants only") || strings.Contains(err.Error(), "\n") {
			t.Errorf("an API contestant with choices: %v", err)
		}
	}
	if _, err := recipes.Decode(dir+"/recipe.yaml", []byte(minimal+"eval:\n  generation: {choices: [a, \"\"]}\n"), nil); err == nil || !strings.Contains(err.Error(), "empty choice") {
		t.Errorf("an empty choice: %v", err)
	}
	if _, ok := p.Contestants[0].(*evals.Local); !ok {
		t.Errorf("base is %T", p.Contestants[0])
	}
}
