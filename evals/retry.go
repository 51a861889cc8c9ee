package evals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Retry says how patient Run is with an API contestant. A failed request
// is tried again on HTTP 429, 408, 409 and 5xx, no answer within Timeout,
// refused or dropped connections and truncated responses, with exponential
// backoff and full jitter, or after the delay the server asks for
// (Retry-After, retry-after-ms).
type Retry struct {
	Attempts int           // attempts per request, the first included (0: DefaultAttempts)
	Base     time.Duration // first backoff ceiling (0: 1s)
	Max      time.Duration // backoff ceiling (0: 1 minute)
	// Timeout is how long a request waits for the server to answer (0:
	// DefaultTimeout). The clock starts again whenever the server answers
	// another request of the same contestant, so a server working through
	// a queue is not taken for a dead one. A request is not sent a third
	// time after going unanswered twice, and a server that has answered
	// nothing at all by then fails the contestant: a dead endpoint ends in
	// about 2 × Timeout.
	Timeout time.Duration
	// Budget bounds the time Run spends asking the contestant, its answers
	// and its judge verdicts together (0: no limit). Once it is spent the
	// requests in flight are stopped and the cases not answered fail; the
	// contestant's status says so.
	Budget time.Duration
}

// The defaults of Retry.
const (
	DefaultAttempts = 3
	DefaultTimeout  = 30 * time.Second
)

// maxUnanswered is how many times one request may go unanswered for
// Timeout before it is given up.
const maxUnanswered = 2

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultAttempts
	}
	if r.Base <= 0 {
		r.Base = time.Second
	}
	if r.Max <= 0 {
		r.Max = time.Minute
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultTimeout
	}
	if r.Budget < 0 {
		r.Budget = 0
	}
	return r
}

// MarshalJSON writes the policy as reports show it: durations as text
// ("30s"), a budget of 0 as "none".
func (r Retry) MarshalJSON() ([]byte, error) {
	budget := "none"
	if r.Budget > 0 {
		budget = r.Budget.String()
	}
	return json.Marshal(struct {
		Attempts int    `json:"attempts"`
		Timeout  string `json:"timeout"`
		Budget   string `json:"budget"`
	}{r.Attempts, r.Timeout.String(), budget})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Retry) UnmarshalJSON(b []byte) error {
	var v struct {
		Attempts        int
		Timeout, Budget string
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Retry{Attempts: v.Attempts}
	var err error
	if v.Timeout != "" {
		if r.Timeout, err = time.ParseDuration(v.Timeout); err != nil {
			return err
		}
	}
	if v.Budget != "" && v.Budget != "none" {
		if r.Budget, err = time.ParseDuration(v.Budget); err != nil {
			return err
		}
	}
	return nil
}

// String is the policy in words: "30s timeout, 3 attempts, no budget".
func (r Retry) String() string {
	s := fmt.Sprintf("%s timeout, %d attempts", r.Timeout, r.Attempts)
	if r.Budget > 0 {
		return s + ", budget " + r.Budget.String()
	}
	return s + ", no budget"
}

// maxRetryAfter caps the delay a server may ask for.
const maxRetryAfter = 10 * time.Minute

// errNoAnswer is the cause of an attempt stopped for want of an answer.
var errNoAnswer = errors.New("no answer")

// retrier runs the attempts of one contestant. When the server asks one
// request to wait (429 with Retry-After), every request of that contestant
// waits: hammering a rate-limited API only earns more 429s.
type retrier struct {
	policy Retry
	name   string
	mu     sync.Mutex
	until  time.Time // no attempt starts before this
	heard  time.Time // when the server last answered anything; zero: never
}

func newRetrier(name string, p Retry) *retrier {
	return &retrier{policy: p.withDefaults(), name: name}
}

// hear notes that the server answered (any HTTP response).
func (r *retrier) hear() {
	r.mu.Lock()
	r.heard = time.Now()
	r.mu.Unlock()
}

func (r *retrier) lastHeard() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.heard
}

// attemptError is what one attempt reports: the error, whether another
// attempt may cure it, and how long the server asked to wait.
type attemptError struct {
	err        error
	retryable  bool
	retryAfter time.Duration
}

// do calls attempt until it succeeds, fails for good or runs out of
// attempts. attempt gets a context that is stopped when the server leaves
// it unanswered for Timeout, and a hint that the HTTP transport fills with
// the server's Retry-After. It returns the number of failed attempts
// before the last.
func (r *retrier) do(ctx context.Context, attempt func(ctx context.Context) error) (int, error) {
	var last error
	unanswered := 0
	f := flightOf(ctx)
	for n := 0; n < r.policy.Attempts; n++ {
		if err := r.wait(ctx, f); err != nil {
			return n, err
		}
		f.attempting(n + 1)
		hint := &retryHint{onResponse: r.hear}
		actx, cancel := context.WithCancelCause(withHint(ctx, hint))
		stop := r.watch(actx, cancel, time.Now())
		err := attempt(actx)
		stop()
		timedOut := errors.Is(context.Cause(actx), errNoAnswer) && ctx.Err() == nil
		cancel(nil)
		if err == nil {
			r.hear()
			return n, nil
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		ae := classify(err, timedOut, hint)
		if timedOut {
			unanswered++
			ae.err = fmt.Errorf("no answer within %s", r.policy.Timeout)
			if unanswered >= maxUnanswered {
				if r.lastHeard().IsZero() {
					return n, &FatalError{fmt.Errorf("the server answered nothing (a request sent %d times waited %s each time)", unanswered, r.policy.Timeout)}
				}
				return n, fmt.Errorf("no answer within %s, %d times", r.policy.Timeout, unanswered)
			}
		}
		last = ae.err
		if !ae.retryable {
			return n, ae.err
		}
		delay := r.backoff(n)
		if ae.retryAfter > 0 {
			delay = min(ae.retryAfter, maxRetryAfter)
			r.mu.Lock()
			if t := time.Now().Add(delay); t.After(r.until) {
				r.until = t
			}
			r.mu.Unlock()
		}
		if n+1 < r.policy.Attempts {
			f.retrying(time.Now().Add(delay), ae.err)
			loggerOf(ctx).Debug("retrying", "contestant", r.name, "attempt", n+2, "in", delay.Round(time.Millisecond), "err", ae.err)
			if err := sleep(ctx, delay); err != nil {
				return n, err
			}
		}
	}
	return r.policy.Attempts - 1, fmt.Errorf("gave up after %d attempts: %w", r.policy.Attempts, last)
}

// watch stops an attempt begun at start, with cause errNoAnswer, once the
// server has answered nothing, to it or to any other request of the
// contestant, for Timeout. The returned function ends the watch.
func (r *retrier) watch(ctx context.Context, cancel context.CancelCauseFunc, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			from := start
			if h := r.lastHeard(); h.After(from) {
				from = h
			}
			d := time.Until(from.Add(r.policy.Timeout))
			if d <= 0 {
				cancel(errNoAnswer)
				return
			}
			t := time.NewTimer(d)
			select {
			case <-done:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}

type loggerKey struct{}

// withLogger hands a run's logger to the retry loops of its contestants:
// a contestant is made before the run and may serve several, so the
// logger travels with the requests' context.
func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// discardLogger logs nothing.
var discardLogger = slog.New(slog.DiscardHandler)

// loggerOf is the logger withLogger put in ctx; without one, a logger
// that discards.
func loggerOf(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return discardLogger
}

// backoff is the delay after failed attempt n (0-based): uniform in
// [0, min(Max, Base·2^n)] ("full jitter"), so that workers that failed
// together do not retry together.
func (r *retrier) backoff(n int) time.Duration {
	ceil := r.policy.Base << min(n, 30)
	if ceil <= 0 || ceil > r.policy.Max {
		ceil = r.policy.Max
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// wait waits until the server's Retry-After allows another attempt.
func (r *retrier) wait(ctx context.Context, f *flight) error {
	r.mu.Lock()
	until := r.until
	r.mu.Unlock()
	if d := time.Until(until); d > 0 {
		f.retrying(until, nil)
		return sleep(ctx, d)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusError is an HTTP error status from an API.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("HTTP %d %s", e.code, http.StatusText(e.code))
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.code, http.StatusText(e.code), e.msg)
}

// retryableStatus says which HTTP statuses are worth another attempt.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code == 409 || code >= 500
}

// fatalStatus says which statuses no other request will get past either.
func fatalStatus(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound || code == http.StatusPaymentRequired
}

// classify decides whether err is worth another attempt. Errors the API
// clients return are turned into statusError by the contestants; anything
// else that is not a cancellation is a transport problem (refused or
// dropped connection, truncated or malformed body) and is retried.
func classify(err error, timedOut bool, hint *retryHint) attemptError {
	ae := attemptError{err: err, retryable: true, retryAfter: hint.get()}
	var se *statusError
	var fe *FatalError
	switch {
	case errors.As(err, &fe):
		ae.retryable = false
	case errors.As(err, &se):
		ae.retryable = retryableStatus(se.code)
		if fatalStatus(se.code) {
			ae.err = &FatalError{err}
		}
	case timedOut, errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, context.Canceled):
		ae.retryable = false
	}
	if !ae.retryable {
		ae.retryAfter = 0
	}
	return ae
}

// retryHint carries a response's Retry-After from the HTTP transport back
// to the retry loop, through the request's context: the API clients do not
// expose response headers with their errors.
type retryHint struct {
	mu sync.Mutex
	d  time.Duration
	// onResponse is called when the server answers (any status).
	onResponse func()
}

func (h *retryHint) set(d time.Duration) {
	h.mu.Lock()
	h.d = d
	h.mu.Unlock()
}

func (h *retryHint) get() time.Duration {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.d
}

type hintKey struct{}

func withHint(ctx context.Context, h *retryHint) context.Context {
	return context.WithValue(ctx, hintKey{}, h)
}

// hintTransport records Retry-After on the retryHint of the request's
// context.
type hintTransport struct{ base http.RoundTripper }

func (t hintTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	h, _ := req.Context().Value(hintKey{}).(*retryHint)
	if err != nil || h == nil {
		return resp, err
	}
	if h.onResponse != nil {
		h.onResponse()
	}
	if resp.StatusCode >= 400 {
		if d, ok := parseRetryAfter(resp.Header, time.Now()); ok {
			h.set(d)
		}
	}
	return resp, err
}

// httpClient wraps c (nil: a fresh client) so that Retry-After reaches the
// retry loop.
func httpClient(c *http.Client) *http.Client {
	out := &http.Client{}
	if c != nil {
		*out = *c
	}
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	out.Transport = hintTransport{base}
	return out
}

// parseRetryAfter reads retry-after-ms (OpenAI, Azure) or Retry-After in
// seconds or as an HTTP date.
func parseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
