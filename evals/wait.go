package evals

import (
	"context"
	"sync"
	"time"
)

// flight is one case being asked, as the reports sent while a contestant
// waits describe it. The retry loop of an API contestant fills it through
// the request's context.
type flight struct {
	mu      sync.Mutex
	since   time.Time // when the case was handed to the contestant
	attempt int
	retryAt time.Time // when it is sent again; zero while an attempt is out
	lastErr error     // the last failed attempt's error
	errAt   time.Time
}

type flightKey struct{}

func withFlight(ctx context.Context, f *flight) context.Context {
	return context.WithValue(ctx, flightKey{}, f)
}

// flightOf is the flight withFlight put in ctx, or nil (whose methods do
// nothing).
func flightOf(ctx context.Context) *flight {
	f, _ := ctx.Value(flightKey{}).(*flight)
	return f
}

// attempting notes that attempt n is being sent.
func (f *flight) attempting(n int) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.attempt, f.retryAt = n, time.Time{}
	f.mu.Unlock()
}

// retrying notes that the next attempt waits until at, after err (nil: a
// wait the server asked of another request).
func (f *flight) retrying(at time.Time, err error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.retryAt = at
	if err != nil {
		f.lastErr, f.errAt = err, time.Now()
	}
	f.mu.Unlock()
}

// fly notes that case i is being asked.
func (q *askRound) fly(i int) *flight {
	f := &flight{since: time.Now()}
	q.mu.Lock()
	q.inflight[i] = f
	q.mu.Unlock()
	return f
}

// land notes that case i has its answer or error.
func (q *askRound) land(i int) {
	q.mu.Lock()
	delete(q.inflight, i)
	q.mu.Unlock()
}

func (q *askRound) setStarting(on bool) {
	q.mu.Lock()
	q.starting = time.Time{}
	if on {
		q.starting = time.Now()
	}
	q.mu.Unlock()
}

// heartbeat tells Progress, every RunOptions.WaitReports that passes
// without a case done, what the contestant is waiting for. It returns the
// function that stops it.
func (q *askRound) heartbeat() (stop func()) {
	every := q.a.r.opts.WaitReports
	if q.a.r.opts.Progress == nil || every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(every/4, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				q.beat(now, every)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// beat sends a waiting report when none was sent for every.
func (q *askRound) beat(now time.Time, every time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.lastReport) < every || q.ctx.Err() != nil {
		return
	}
	w := q.waitLocked(now)
	if w == nil {
		return
	}
	q.lastReport = now
	a := q.a
	a.r.mu.Lock()
	a.r.opts.Progress(Progress{Phase: q.phase, Contestant: a.c.Name(), Done: q.finished, Total: len(q.cases), Cached: q.cached, Failed: q.failed, Wait: w})
	a.r.mu.Unlock()
}

// waitLocked is what the round waits for now (nil: nothing); q.mu is
// held.
func (q *askRound) waitLocked(now time.Time) *Wait {
	if !q.starting.IsZero() {
		return &Wait{Starting: true, For: now.Sub(q.starting)}
	}
	if len(q.inflight) == 0 {
		return nil
	}
	w := &Wait{Requests: len(q.inflight)}
	var lastErrAt time.Time
	for _, f := range q.inflight {
		f.mu.Lock()
		w.For = max(w.For, now.Sub(f.since))
		switch {
		case f.retryAt.After(now):
			w.Retrying++
			if d := f.retryAt.Sub(now); w.RetryIn == 0 || d < w.RetryIn {
				w.RetryIn = d
			}
		case f.attempt > 1:
			w.Resent++
		}
		if f.lastErr != nil && f.errAt.After(lastErrAt) {
			lastErrAt, w.LastError = f.errAt, q.a.r.red.errText(f.lastErr.Error())
		}
		f.mu.Unlock()
	}
	return w
}
