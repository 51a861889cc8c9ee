package publish_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/evals"
)

// answers are the greedy answers of model (with adapter, when not "") to
// the cases, in-process.
func answers(t *testing.T, model, adapter string, cases []evals.Case) []string {
	t.Helper()
	o := evals.LocalOptions{Model: model, Settings: evals.Settings{MaxTokens: 24, Seed: 42}, Sequences: 1, Threads: 1}
	if adapter != "" {
		o.Adapters = []evals.AdapterSpec{{Path: adapter}}
	}
	l, err := evals.NewLocal("m", o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []string
	for _, c := range cases {
		a, err := l.Answer(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Text)
	}
	return out
}

// TestMergedAnswersEqual: merged at F16 and Q8_0 by llama.cpp's quantizer,
// the tuned model gives the greedy answers of the base with the adapter on
// the prompts it was trained on; at Q4_K_M it is logged how many do.
func TestMergedAnswersEqual(t *testing.T) {
	dir, base, adapter, cases := tunedChat(t)
	want := answers(t, base, adapter, cases)
	plain := answers(t, base, "", cases)
	for _, typ := range []string{"f16", "q8_0", "q4_k_m"} {
		merged := filepath.Join(t.TempDir(), typ+".gguf")
		if _, err := adapters.Merge(base, adapter, merged, adapters.MergeOptions{Type: typ, Threads: 1}); err != nil {
			t.Fatal(err)
		}
		got := answers(t, merged, "", cases)
		same, tuned := 0, 0
		for i := range want {
			if got[i] == want[i] {
				same++
			}
			if want[i] != plain[i] {
				tuned++
			}
		}
		t.Logf("%s: %d of %d greedy answers equal base+adapter's (the adapter changes %d)", typ, same, len(want), tuned)
		if tuned == 0 {
			t.Fatalf("the adapter changes no answer: the test shows nothing (%s)", dir)
		}
		if typ != "q4_k_m" && same != len(want) {
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("%s: %q: merged %q, base+adapter %q", typ, cases[i].Prompt[len(cases[i].Prompt)-1].Content, got[i], want[i])
				}
			}
		}
	}
}
