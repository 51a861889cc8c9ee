package runs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/shared"
)

type limited struct {
	name string
	max  int
}

func (l limited) Name() string { return l.name }
func (l limited) Info() evals.Info {
	return evals.Info{Kind: "test", Settings: evals.Settings{MaxTokens: l.max}}
}
func (l limited) Answer(context.Context, evals.Case) (evals.Answer, error) {
	return evals.Answer{}, nil
}

// TestLongReferences: before generating, eval says how many reference
// answers are longer than max_tokens in the base's tokens, the longest,
// and the max_tokens that fits them, in one line.
func TestLongReferences(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	refs := []string{"cat", "the dog ran", "card_lost", "a label much longer than the limit of a few tokens: request_refund_for_a_cancelled_order_please"}
	var cases []datasets.Case
	for _, r := range refs {
		cases = append(cases, datasets.Case{Reference: r})
	}
	lr, err := LongReferences(model, cases, []evals.Contestant{limited{"base", 256}, limited{"tuned", 4}})
	if err != nil {
		t.Fatal(err)
	}
	if lr == nil || lr.Longer < 1 || lr.Longer > 3 || lr.Of != 4 || lr.Longest <= 4 || lr.MaxTokens != 4 || strings.Join(lr.Contestants, ",") != "tuned" || lr.Fits() != lr.Longest+1 {
		t.Fatalf("long references: %+v", lr)
	}
	var buf bytes.Buffer
	lr.Warn(slog.New(slog.NewTextHandler(&buf, nil)))
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "longer than max_tokens") || !strings.Contains(line, "max_tokens=4") ||
		!strings.Contains(line, "generation.max_tokens: ") || !strings.Contains(line, "contestants=tuned") {
		t.Errorf("warning: %s", line)
	}
	if lr, err := LongReferences(model, cases, []evals.Contestant{limited{"base", 256}}); err != nil || lr != nil {
		t.Errorf("every reference fits 256 tokens: %+v, %v", lr, err)
	}
}
