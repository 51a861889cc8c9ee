package evals

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ask asks one contestant every case as Run does (its start, the answer
// cache, its concurrency, retries, bounded waits and time budget, giving it
// up after MaxConsecutiveFailures failures in a row, its key removed from
// everything) and scores nothing: what a teacher writing training answers
// needs. It returns the contestant's summary (Scores empty) and one answer
// per case, a failed case's with Error set. Like Run, it returns an error
// only for bad arguments or when ctx is cancelled; the answers received
// until then are in the cache, and the next call asks only the others.
func Ask(ctx context.Context, cases []Case, c Contestant, o RunOptions) (*ContestantResult, []CaseAnswer, error) {
	start := time.Now()
	if c == nil {
		return nil, nil, errors.New("no contestant")
	}
	if len(cases) == 0 {
		return nil, nil, errors.New("no cases to ask")
	}
	if err := checkName(c.Name()); err != nil {
		return nil, nil, fmt.Errorf("contestant %w", err)
	}
	if o.MaxConsecutiveFailures <= 0 {
		o.MaxConsecutiveFailures = 5
	}
	if o.WaitReports <= 0 {
		o.WaitReports = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	red := newRedactor(c)
	o.Logger = red.logger(o.Logger)
	ctx = withLogger(ctx, o.Logger)
	r := &runner{opts: o, cases: cases, red: red}
	if o.CacheDir != "" {
		r.cache = &cache{dir: o.CacheDir}
	}
	r.answer(ctx, []Contestant{c})
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cr := r.contestantResult(scoreTable{}, nil, nil, 0, c)
	o.Logger.Debug("asked", "contestant", c.Name(), "cases", len(cases), "answered", cr.Answered, "cached", cr.Cached, "in", time.Since(start).Round(time.Millisecond))
	return &cr, r.answers[0], nil
}
