package evals

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/finetune-dev/finetune/internal/llama"
)

// Scorer is a contestant that can score given tokens: the summed
// log-probability it gives the weighted tokens of a sequence, each
// predicted from the tokens before it. Local contestants are scorers;
// the Preference metric needs one.
type Scorer interface {
	ScoreTokens(ctx context.Context, tokens []int32, weights []float32) (float64, error)
}

// ScoreTokens is the summed log-probability of the tokens whose weight is
// positive (Weights[0] is never), each predicted from all the tokens
// before it: how DPO scores an answer.
func (l *Local) ScoreTokens(ctx context.Context, tokens []int32, weights []float32) (float64, error) {
	if len(tokens) != len(weights) {
		return 0, fmt.Errorf("%d tokens, %d weights", len(tokens), len(weights))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.model == nil {
		return 0, errors.New("contestant closed")
	}
	if len(tokens) >= l.model.ContextLength() {
		return 0, fmt.Errorf("%d tokens do not fit the model's context of %d", len(tokens), l.model.ContextLength())
	}
	if err := l.ensureContext(len(tokens) + 1); err != nil {
		return 0, err
	}
	l.ctx.Reset()
	sum := 0.0
	var batch []llama.BatchToken
	for i := 0; i < len(tokens); i += l.ctx.BatchSize() {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		batch = batch[:0]
		for j := i; j < min(i+l.ctx.BatchSize(), len(tokens)); j++ {
			batch = append(batch, llama.BatchToken{Token: tokens[j], Pos: j, Logits: j+1 < len(tokens) && weights[j+1] > 0})
		}
		if err := l.ctx.Decode(batch); err != nil {
			return 0, err
		}
		for k, b := range batch {
			if !b.Logits {
				continue
			}
			logits := l.ctx.Logits(k)
			if logits == nil {
				return 0, errors.New("llama.cpp gave no logits")
			}
			sum += logSoftmaxAt(logits, int(tokens[b.Pos+1]))
		}
	}
	return sum, nil
}

// logSoftmaxAt is log softmax(logits)[i].
func logSoftmaxAt(logits []float32, i int) float64 {
	peak := math.Inf(-1)
	for _, v := range logits {
		peak = max(peak, float64(v))
	}
	s := 0.0
	for _, v := range logits {
		s += math.Exp(float64(v) - peak)
	}
	return float64(logits[i]) - peak - math.Log(s)
}

// prefer scores the Preference metrics: for every case that is a
// preference pair and every contestant that is a Scorer, 1 when the
// contestant gives the chosen answer a higher log-probability than the
// rejected one, else 0. Other contestants get no score.
func (r *runner) prefer(ctx context.Context, cs []Contestant, t scoreTable) error {
	for mi := range r.metrics {
		m := &r.metrics[mi]
		if m.Kind != Preference {
			continue
		}
		for ci, c := range cs {
			s, ok := c.(Scorer)
			if !ok {
				r.opts.Logger.Info("no preference score: the contestant cannot score given answers (a local model can)", "metric", m.Name, "contestant", c.Name())
				continue
			}
			pairs := 0
			last := time.Now()
			for i := range r.cases {
				if time.Since(last) > r.opts.WaitReports {
					r.opts.Logger.Info("preference", "contestant", c.Name(), "done", fmt.Sprintf("%d/%d", i, len(r.cases)))
					last = time.Now()
				}
				p := r.cases[i].Pair
				if p == nil {
					continue
				}
				pairs++
				lc, err := s.ScoreTokens(ctx, p.Chosen.Tokens, p.Chosen.Weights)
				if err == nil {
					var lr float64
					if lr, err = s.ScoreTokens(ctx, p.Rejected.Tokens, p.Rejected.Weights); err == nil {
						v := 0.0
						if lc > lr {
							v = 1
						}
						t[m.Name][ci][i] = v
						ca := &r.answers[ci][i]
						ca.setScore(m.Name, v)
						ca.setDetail(m.Name, fmt.Sprintf("log p(chosen) %.3f, log p(rejected) %.3f", lc, lr))
						continue
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.opts.Logger.Warn("preference score failed", "metric", m.Name, "contestant", c.Name(), "case", r.cases[i].Source, "err", err)
			}
			if pairs == 0 {
				return fmt.Errorf("metric %s: no eval case is a preference pair (the eval data must be in the preference format)", m.Name)
			}
		}
	}
	return nil
}
