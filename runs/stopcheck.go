package runs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/finetune-dev/finetune/internal/cpuload"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// The stop-token check. Every trained answer ends with the token that stops
// generation (the template's end-of-turn token; EOS with template none). A
// base that has never produced that token, because its output-head row was
// never trained (a chat template's special token on a base model) or was
// never a target, like the rows of tokens that never occur (stories260K's
// </s>), cannot be taught to stop by LoRA on the attention and feed-forward
// projections: no change of the last hidden state lifts one row of a head
// whose row is no different from a dead token's. Training the output head
// does. So
// before training, the base (no adapter) reads a few training examples up to
// where their answers end, and a run whose base gives the stop token next to
// no probability at every one of those ends is warned about.

const (
	// stopMaxExamples is how many examples the check reads at most: the
	// shortest, so that the check stays a few forward passes.
	stopMaxExamples = 8
	// stopBudget is how many tokens it decodes at most, all examples
	// together, on a model of up to stopBudgetParams parameters: 1.9 s for
	// a 1B Q8_0 model on two cores (measured; about 0.5 s of it loading).
	// A larger model gets fewer, so that the work stays the same, but never
	// under stopMinBudget. An example longer than the budget alone is read
	// from its first token and the last ones before its answer's end.
	stopBudget       = 96
	stopBudgetParams = 1.25e9
	stopMinBudget    = 32
	// stopMinProb and stopMaxRank: the base produces the stop token when,
	// at one answer end at least, it gives it a probability of stopMinProb
	// or more (or of 1/vocabulary, a uniform guess, when that is less:
	// a row of the head that is merely random is no dead row), or ranks it
	// among its stopMaxRank likeliest tokens. A base that emits the token
	// after an answer gives it percents there; one that never emits it
	// gives it millionths or less (stories260K gives </s> 1e-10 and less,
	// ranks in the 400s of its 512 tokens): orders of magnitude apart, so
	// the exact figures hardly matter.
	stopMinProb = 1e-4
	stopMaxRank = 10
)

// StopCheck is what the stop-token check measured.
type StopCheck struct {
	Token    int32  // the stop token
	Text     string // as the vocabulary spells it
	Vocab    int    // tokens in the vocabulary
	Examples int    // examples read
	Ends     int    // answer ends measured
	Decoded  int    // tokens decoded
	// Prob is the highest probability the base gave the stop token at an
	// answer end, Rank its rank there (1: the likeliest token).
	Prob    float64
	Rank    int
	Elapsed time.Duration
}

// Produced reports whether the base produces the stop token where answers
// end.
func (c *StopCheck) Produced() bool {
	return c.Prob >= min(stopMinProb, 1/float64(c.Vocab)) || c.Rank <= stopMaxRank
}

// Warning is what the run says about a base that does not produce the stop
// token, given the recipe's LoRA targets; "" when it does.
func (c *StopCheck) Warning(targets []string) string {
	if c.Produced() {
		return ""
	}
	where := "where the training answers end"
	if c.Ends > 1 {
		where = fmt.Sprintf("at best, over %d answer ends", c.Ends)
	}
	msg := fmt.Sprintf("the base never produces %s, the token every training answer ends with: it gives it a probability of %.1e %s (rank %d of %d)",
		quoteToken(c.Text), c.Prob, where, c.Rank, c.Vocab)
	if slices.Contains(targets, "output") {
		return msg + "; lora.targets has output, which can teach it to stop"
	}
	return msg + ". LoRA on the attention and feed-forward projections cannot teach the model to stop: add `output` to lora.targets"
}

func quoteToken(s string) string { return "`" + s + "`" }

// checkStop runs the stop-token check on a run's training windows and logs
// its outcome: a warning when the base does not produce the stop token.
// Then, when the recipe left lora.targets to its default, the output head
// is added to the targets (r.LoRA.Targets changes) and returned as added,
// since the default projections cannot teach such a base to stop; an
// explicit lora.targets is kept, with the warning. It never fails the run:
// an error inside the check is logged and the check skipped.
func checkStop(ctx context.Context, r *recipes.Recipe, base string, train []lora.Window, log *slog.Logger) (added []string) {
	defer func() {
		if p := recover(); p != nil {
			log.Warn("stop-token check skipped", "err", fmt.Sprint(p))
		}
	}()
	c, err := MeasureStop(ctx, base, train, r.Train.Threads)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("stop-token check skipped", "err", err)
		}
		return
	case c == nil:
		return // no trained answer end
	}
	kv := []any{"token", c.Text, "prob", fmt.Sprintf("%.2g", c.Prob), "rank", c.Rank, "vocab", c.Vocab, "answer_ends", c.Ends, "elapsed", c.Elapsed.Round(time.Millisecond).String()}
	if !c.Produced() && !r.Given("lora.targets") && !slices.Contains(r.LoRA.Targets, lora.TargetOutput) {
		r.LoRA.Targets = append(slices.Clone(r.LoRA.Targets), lora.TargetOutput)
		log.Warn(c.AddedOutput(), kv...)
		return []string{lora.TargetOutput}
	}
	if w := c.Warning(r.LoRA.Targets); w != "" {
		log.Warn(w, kv...)
		return nil
	}
	log.Info("stop token", kv...)
	return nil
}

// AddedOutput is what the run says when it adds the output head to the
// default targets of a base that does not produce the stop token.
func (c *StopCheck) AddedOutput() string {
	return fmt.Sprintf("the base never produces %s, the token every training answer ends with (a probability of %.1e at best, rank %d of %d): training `output` too, beside the default targets, so that the tuned model learns to stop (list lora.targets in the recipe to choose them yourself)",
		quoteToken(c.Text), c.Prob, c.Rank, c.Vocab)
}

// stopExample is one example the check reads: its tokens up to its last
// trained answer end, and where in them answers end.
type stopExample struct {
	tokens []int32
	ends   []int // i: the logits after tokens[i] predict the stop token
}

// MeasureStop measures how likely the base finds the stop token where the
// trained answers of train end: the token most trained answer ends have.
// It reads the shortest few examples, at most stopBudget tokens in all (fewer
// on a model over stopBudgetParams parameters), with
// threads threads (0: the cores other work leaves free). It returns nil when
// no answer end is trained.
func MeasureStop(ctx context.Context, base string, train []lora.Window, threads int) (*StopCheck, error) {
	start := time.Now()
	m, err := llama.LoadModel(base, llama.ModelOptions{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	budget := stopBudget
	if p := float64(m.Params()); p > stopBudgetParams {
		budget = max(stopMinBudget, int(stopBudget*stopBudgetParams/p))
	}
	stop, exs := stopSamples(m, train, budget)
	if len(exs) == 0 {
		return nil, nil
	}
	longest, total := 0, 0
	for _, ex := range exs {
		longest, total = max(longest, len(ex.tokens)), total+len(ex.tokens)
	}
	lctx, err := llama.NewContext(m, llama.ContextOptions{Context: longest, Sequences: len(exs), Batch: total, Threads: cpuload.Threads(threads)})
	if err != nil {
		return nil, err
	}
	defer lctx.Close()
	c := &StopCheck{Token: stop, Text: m.TokenText(stop), Vocab: m.VocabSize(), Examples: len(exs), Decoded: total, Prob: -1}
	batch := make([]llama.BatchToken, 0, total)
	for s, ex := range exs {
		for i, t := range ex.tokens {
			batch = append(batch, llama.BatchToken{Token: t, Pos: i, Seq: s, Logits: slices.Contains(ex.ends, i)})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := lctx.Decode(batch); err != nil {
		return nil, err
	}
	for i, bt := range batch {
		if !bt.Logits {
			continue
		}
		logits := lctx.Logits(i)
		if logits == nil {
			return nil, errors.New("llama.cpp gave no logits")
		}
		lp, rank := logProbRank(logits, stop)
		c.Ends++
		if p := math.Exp(lp); p > c.Prob {
			c.Prob, c.Rank = p, rank
		}
	}
	c.Elapsed = time.Since(start)
	return c, nil
}

// logProbRank returns the log-probability of token t under logits and its
// rank (1 + the number of tokens with a higher logit).
func logProbRank(logits []float32, t int32) (float64, int) {
	peak := math.Inf(-1)
	for _, v := range logits {
		peak = max(peak, float64(v))
	}
	sum := 0.0
	rank := 1
	for _, v := range logits {
		sum += math.Exp(float64(v) - peak)
		if v > logits[t] {
			rank++
		}
	}
	return float64(logits[t]) - peak - math.Log(sum), rank
}

// stopSamples finds the stop token (the end-of-generation token most
// trained answer ends have) and the examples the check reads: the shortest
// ones holding a trained answer end with it, at most stopMaxExamples of them
// and budget tokens in all.
func stopSamples(m *llama.Model, train []lora.Window, budget int) (int32, []stopExample) {
	type found struct {
		w, start, n int   // window, first token, tokens up to the last end
		ends        []int // indices into the window of the trained ends
	}
	var all []found
	count := map[int32]int{}
	for wi, w := range train {
		last := -1 // index into all of the example being read
		for i := 1; i < len(w.Tokens); i++ {
			if w.Seq[i] < 0 || w.Weights[i] <= 0 || w.Pos[i] == 0 || !m.IsEndOfGeneration(w.Tokens[i]) {
				continue
			}
			count[w.Tokens[i]]++
			start := i - int(w.Pos[i])
			if last < 0 || all[last].w != wi || all[last].start != start {
				all = append(all, found{w: wi, start: start})
				last = len(all) - 1
			}
			f := &all[last]
			f.ends = append(f.ends, i)
			f.n = i - start
		}
	}
	if len(all) == 0 {
		return -1, nil
	}
	stop, most := int32(-1), 0
	for t, n := range count {
		if n > most || n == most && t < stop {
			stop, most = t, n
		}
	}
	slices.SortStableFunc(all, func(a, b found) int { return a.n - b.n })
	var out []stopExample
	total := 0
	for _, f := range all {
		w := train[f.w]
		var ends []int
		for _, e := range f.ends {
			if w.Tokens[e] == stop {
				ends = append(ends, e)
			}
		}
		if len(ends) == 0 {
			continue
		}
		n := ends[len(ends)-1] - f.start // tokens before the last end
		if total+n > budget {
			if len(out) > 0 {
				break
			}
			// The shortest example alone is over the budget: its first
			// token (BOS) and the last ones before its last end.
			cut := f.start + n - (budget - 1)
			ex := stopExample{tokens: append([]int32{w.Tokens[f.start]}, w.Tokens[cut:f.start+n]...)}
			for _, e := range ends {
				if e-1 >= cut {
					ex.ends = append(ex.ends, e-1-cut+1)
				}
			}
			return stop, []stopExample{ex}
		}
		ex := stopExample{tokens: w.Tokens[f.start : f.start+n]}
		for _, e := range ends {
			ex.ends = append(ex.ends, e-1-f.start)
		}
		out = append(out, ex)
		total += n
		if len(out) == stopMaxExamples {
			break
		}
	}
	return stop, out
}
