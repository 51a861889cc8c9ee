package evals

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// Redacted is what stands in for a secret in every text Run hands out.
const Redacted = "[redacted]"

// minSecretLen is the shortest key treated as a secret: a shorter one
// ("ollama", which Ollama's /v1 ignores) would blot out ordinary words.
const minSecretLen = 8

// redactor removes secrets from texts: the API keys of a run's
// contestants wherever they appear, and, in error texts and log lines, the
// values of Authorization and API key headers and URL parameters, whoever's
// keys they are (a proxy that echoes a request may show them).
type redactor struct{ secrets []string }

// secretKeeper is implemented by contestants that hold a secret (an API
// key): Run removes it from everything it hands out.
type secretKeeper interface{ secrets() []string }

func newRedactor(cs ...Contestant) *redactor {
	r := &redactor{}
	for _, c := range cs {
		if k, ok := c.(secretKeeper); ok {
			for _, s := range k.secrets() {
				r.add(s)
			}
		}
	}
	return r
}

func (r *redactor) add(s string) {
	if len(s) < minSecretLen || slices.Contains(r.secrets, s) {
		return
	}
	r.secrets = append(r.secrets, s)
	// Longest first: a key that holds another is removed whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// text removes the secrets from s: for answers, prompts and anything a
// model wrote, where a header-like phrase is content, not a leak.
func (r *redactor) text(s string) string {
	if r == nil {
		return s
	}
	for _, k := range r.secrets {
		if strings.Contains(s, k) {
			s = strings.ReplaceAll(s, k, Redacted)
		}
	}
	return s
}

// errText removes the secrets and any credential-looking header or URL
// parameter value from s: for error texts and log lines.
func (r *redactor) errText(s string) string {
	return redactCredentials(r.text(s))
}

// err is e's text, redacted, as an error that still answers errors.Is
// (context.Canceled, say) but hands out no other error's text.
func (r *redactor) err(e error) error {
	if e == nil {
		return nil
	}
	return &redactedError{msg: r.errText(e.Error()), err: e}
}

// redactedError is an error whose text has had its secrets removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is looks through to the original error without handing out its text.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

var (
	// An Authorization or API key header (or JSON field) and its value:
	// "Authorization: Bearer sk-…", "\"api-key\":\"…\"", "x-api-key=…",
	// Go's header dump "Authorization:[Bearer …]".
	headerValueRE = regexp.MustCompile(`(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|openai-api-key|api[-_ ]?key|access[-_]token)(["'\\\]]*\s*[:=]\s*[\["'\\\s]*)((?:bearer|basic|token)\s+)?([^\s"'\\,;&\]}]+)`)
	// A bearer token on its own.
	bearerRE = regexp.MustCompile(`(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{6,})`)
	// A key in a URL's query.
	queryKeyRE = regexp.MustCompile(`(?i)([?&](?:api[-_]?key|key|token|access_token|auth)=)([^&\s"'#]+)`)
)

// redactCredentials removes the values of credential headers, bearer
// tokens and key parameters from s.
func redactCredentials(s string) string {
	s = headerValueRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := headerValueRE.FindStringSubmatch(m)
		if strings.HasPrefix(strings.TrimPrefix(sub[4], "["), "redacted") {
			return m
		}
		return sub[1] + sub[2] + sub[3] + Redacted
	})
	s = bearerRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := bearerRE.FindStringSubmatch(m)
		return sub[1] + Redacted
	})
	return queryKeyRE.ReplaceAllString(s, "${1}"+Redacted)
}

// results removes the secrets from every text of res (answers, errors,
// details, prompts, names), and credentials from its error texts.
func (r *redactor) results(res *Results) {
	if r == nil || res == nil {
		return
	}
	redactValue(reflect.ValueOf(res).Elem(), r)
}

// redactValue walks v, replacing every string with its redacted form:
// fields named Error get errText, the others text.
func redactValue(v reflect.Value, r *redactor) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			redactValue(v.Elem(), r)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !t.Field(i).IsExported() {
				continue
			}
			if f.Kind() == reflect.String && f.CanSet() {
				if t.Field(i).Name == "Error" {
					f.SetString(r.errText(f.String()))
				} else {
					f.SetString(r.text(f.String()))
				}
				continue
			}
			redactValue(f, r)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			e := v.Index(i)
			if e.Kind() == reflect.String && e.CanSet() {
				e.SetString(r.text(e.String()))
				continue
			}
			redactValue(e, r)
		}
	case reflect.Map:
		if v.Type().Elem().Kind() == reflect.String {
			for _, k := range v.MapKeys() {
				v.SetMapIndex(k, reflect.ValueOf(r.text(v.MapIndex(k).String())).Convert(v.Type().Elem()))
			}
			return
		}
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.Pointer {
				redactValue(e, r)
			}
		}
	}
}

// redactHandler is a slog.Handler that redacts every message and
// attribute before handing the record on.
type redactHandler struct {
	next slog.Handler
	r    *redactor
}

// logger is l with every line redacted.
func (r *redactor) logger(l *slog.Logger) *slog.Logger {
	return slog.New(&redactHandler{next: l.Handler(), r: r})
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.errText(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		var as []any
		for _, g := range v.Group() {
			as = append(as, h.attr(g))
		}
		return slog.Group(a.Key, as...)
	case slog.KindString:
		return slog.String(a.Key, h.r.errText(v.String()))
	case slog.KindAny:
		if e, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.r.errText(e.Error()))
		}
		return slog.String(a.Key, h.r.errText(v.String()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), r: h.r}
}
