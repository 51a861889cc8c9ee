package evals

import (
	"context"
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

// Retry says how an API contestant retries a failed request: on HTTP 429,
// 408 and 5xx, timeouts, refused or dropped connections and truncated or
// malformed responses, with exponential backoff and full jitter, or after
// the delay the server asks for (Retry-After, retry-after-ms).
type Retry struct {
	Attempts int           // attempts in all, first included (0: 6)
	Base     time.Duration // first backoff ceiling (0: 1s)
	Max      time.Duration // backoff ceiling (0: 1 minute)
	// Timeout bounds one attempt (0: 5 minutes).
	Timeout time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Base <= 0 {
		r.Base = time.Second
	}
	if r.Max <= 0 {
		r.Max = time.Minute
	}
	if r.Timeout <= 0 {
		r.Timeout = 5 * time.Minute
	}
	return r
}

// maxRetryAfter caps the delay a server may ask for.
const maxRetryAfter = 10 * time.Minute

// retrier runs the attempts of one contestant. When the server asks one
// request to wait (429 with Retry-After), every request of that contestant
// waits: hammering a rate-limited API only earns more 429s.
type retrier struct {
	policy Retry
	name   string
	mu     sync.Mutex
	until  time.Time // no attempt starts before this
}

func newRetrier(name string, p Retry) *retrier {
	return &retrier{policy: p.withDefaults(), name: name}
}

// attemptError is what one attempt reports: the error, whether another
// attempt may cure it, and how long the server asked to wait.
type attemptError struct {
	err        error
	retryable  bool
	retryAfter time.Duration
}

// do calls attempt until it succeeds, fails for good or runs out of
// attempts. attempt gets a context bounded by the per-attempt timeout and a
// hint that the HTTP transport fills with the server's Retry-After. It
// returns the number of failed attempts before the last.
func (r *retrier) do(ctx context.Context, attempt func(ctx context.Context) error) (int, error) {
	var last error
	for n := 0; n < r.policy.Attempts; n++ {
		if err := r.wait(ctx); err != nil {
			return n, err
		}
		hint := &retryHint{}
		actx, cancel := context.WithTimeout(withHint(ctx, hint), r.policy.Timeout)
		err := attempt(actx)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		ae := classify(err, timedOut, hint)
		if timedOut {
			ae.err = fmt.Errorf("no answer within %s: %w", r.policy.Timeout, err)
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
			loggerOf(ctx).Debug("retrying", "contestant", r.name, "attempt", n+2, "in", delay.Round(time.Millisecond), "err", ae.err)
			if err := sleep(ctx, delay); err != nil {
				return n, err
			}
		}
	}
	return r.policy.Attempts - 1, fmt.Errorf("gave up after %d attempts: %w", r.policy.Attempts, last)
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

func (r *retrier) wait(ctx context.Context) error {
	r.mu.Lock()
	d := time.Until(r.until)
	r.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return sleep(ctx, d)
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
	if err == nil && resp.StatusCode >= 400 {
		if h, ok := req.Context().Value(hintKey{}).(*retryHint); ok {
			if d, ok := parseRetryAfter(resp.Header, time.Now()); ok {
				h.set(d)
			}
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
