package datasets

import (
	"fmt"
	"strings"
	"testing"
)

// templatedFile writes a templated intent file: every prompt is one of a
// few templates with a slot filled, so that a random split puts prompts
// with the same words in another casing, or one word changed, on both
// sides.
func templatedFile(t *testing.T) string {
	var b strings.Builder
	items := []string{"order", "card", "parcel", "refund", "account", "invoice", "ticket", "booking", "payment", "subscription"}
	templates := []string{
		"i want to cancel my %s please, it was placed by mistake yesterday",
		"how do I check the status of my %s from last week",
		"can you help me change the address on my %s before it ships",
		"what is the fastest way to get a copy of my %s sent to me",
	}
	for i, tmpl := range templates {
		for j, it := range items {
			p := fmt.Sprintf(tmpl, it)
			if j%3 == 1 {
				p = strings.ToUpper(p[:1]) + p[1:]
			}
			if j%3 == 2 {
				p = strings.ToUpper(p)
			}
			b.WriteString(chatLine(p, fmt.Sprintf("intent_%d", i)))
		}
	}
	return writeFile(t, "templated.jsonl", b.String())
}

func TestScanNearDuplicateLeaks(t *testing.T) {
	train := templatedFile(t)
	eval := writeFile(t, "eval.jsonl", chatLine("I want to cancel my ORDER please, it was placed by mistake yesterday", "intent_0")+
		chatLine("how do i check the status of my card from last month", "intent_1")+ // one word changed
		chatLine("tell me a story about a dragon", "other"))
	// A separate eval file: two of three eval prompts have near duplicates
	// in training (not exact: the exact check finds none).
	rep, err := Scan(Config{Train: train, Eval: eval, NearDuplicate: 0.8}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Leaks != 0 || rep.LeakedEval != 2 || rep.NearLeaks < 2 || len(rep.NearLeakList) == 0 {
		t.Fatalf("separate eval: exact %d, near %d, eval prompts leaked %d (%+v)", rep.Leaks, rep.NearLeaks, rep.LeakedEval, rep.NearLeakList)
	}
	t.Logf("separate eval: %d near leaks, %d of %d eval prompts, e.g. %+v", rep.NearLeaks, rep.LeakedEval, rep.Eval.Records, rep.NearLeakList[0])
	// Without the check nothing is found.
	rep0, err := Scan(Config{Train: train, Eval: eval}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep0.Leaks != 0 || rep0.NearLeaks != 0 {
		t.Fatalf("no near check: %d exact, %d near", rep0.Leaks, rep0.NearLeaks)
	}
	// Dropping them: training keeps the rest.
	repD, err := Scan(Config{Train: train, Eval: eval, NearDuplicate: 0.8, DropLeaks: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if repD.LeaksDropped != rep.NearLeaks || repD.Train.Records != rep.Train.Records-rep.NearLeaks {
		t.Fatalf("dropped %d of %d near leaks, %d training records left of %d", repD.LeaksDropped, rep.NearLeaks, repD.Train.Records, rep.Train.Records)
	}
	if w := rep.LeakWarning(); !strings.Contains(w, "2 of 3 eval prompts have an exact or near duplicate in training (11 training records, 0 exact") {
		t.Fatalf("warning %q", w)
	}
	if repD.LeakWarning() != "" || !strings.Contains(repD.LeakNote(), "left out of training: 11 records") {
		t.Fatalf("after dropping: warning %q, note %q", repD.LeakWarning(), repD.LeakNote())
	}

	// A random split of the templated file: the prompt hash keeps each
	// exact prompt on one side, and still most eval prompts have a near
	// duplicate on the training side, before or after them in the file.
	repR, err := Scan(Config{Train: train, EvalRatio: 0.3, Seed: 1, NearDuplicate: 0.8}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if repR.Eval.Records == 0 || repR.LeakedEval*2 < repR.Eval.Records {
		t.Fatalf("ratio split: %d of %d eval prompts leaked", repR.LeakedEval, repR.Eval.Records)
	}
	t.Logf("ratio split: %d of %d eval prompts have a near duplicate in training (%d training records)", repR.LeakedEval, repR.Eval.Records, repR.NearLeaks)
	repRD, err := Scan(Config{Train: train, EvalRatio: 0.3, Seed: 1, NearDuplicate: 0.8, DropLeaks: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if repRD.LeaksDropped != repR.NearLeaks || repRD.Train.Records+repRD.LeaksDropped != repR.Train.Records {
		t.Fatalf("ratio split, dropped: %d of %d", repRD.LeaksDropped, repR.NearLeaks)
	}
}

func TestJaccardWords(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want float64
	}{
		{"Cancel my order", "cancel MY ORDER!", 1},
		{"a b c d e f g h i", "a b c d e f g h x", 0.8},
		{"hello there", "goodbye now", 0},
	} {
		if got := jaccard(wordSet(c.a), wordSet(c.b)); got != c.want {
			t.Errorf("jaccard(%q, %q) = %g, want %g", c.a, c.b, got, c.want)
		}
	}
}
