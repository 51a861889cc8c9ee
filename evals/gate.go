package evals

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Gate is a condition on results for CI ("--fail-under"), such as
//
//	tuned.accuracy - base.accuracy >= 0.05
//	tuned.rouge >= 0.9 * gpt4o.rouge
//	tuned.cost_usd < 1
//
// An expression compares two arithmetic expressions (+ - * / and
// parentheses) over numbers and CONTESTANT.COLUMN values, where COLUMN is a
// metric column (accuracy, accuracy_macro_f1, ...) or one of cost_usd,
// latency_p50_ms, latency_p95_ms, failed, answered. The comparison is one of
// >= > <= < == !=.
type Gate struct {
	Expr  string
	left  node
	op    string
	right node
}

// ParseGate parses a gate expression.
func ParseGate(expr string) (*Gate, error) {
	p := &gateParser{src: expr}
	if err := p.lex(); err != nil {
		return nil, fmt.Errorf("gate %q: %w", expr, err)
	}
	left, err := p.sum()
	if err != nil {
		return nil, fmt.Errorf("gate %q: %w", expr, err)
	}
	op := p.next()
	switch op.text {
	case ">=", ">", "<=", "<", "==", "!=":
	default:
		return nil, fmt.Errorf("gate %q: expected a comparison (>=, >, <=, <, ==, !=) after %q, found %s", expr, strings.TrimSpace(expr[:op.pos]), op.describe())
	}
	right, err := p.sum()
	if err != nil {
		return nil, fmt.Errorf("gate %q: %w", expr, err)
	}
	if t := p.next(); t.kind != tokEOF {
		return nil, fmt.Errorf("gate %q: unexpected %s", expr, t.describe())
	}
	return &Gate{Expr: expr, left: left, op: op.text, right: right}, nil
}

// Check evaluates the gate on r. It returns whether the gate passes and a
// line that shows the values ("tuned.accuracy - base.accuracy = 0.0625 >=
// 0.05"), which names the contestants that answered only some of the cases
// (a partial contestant's values cover those); an error when the gate
// names a contestant or column r does not have, a value that is missing,
// or a contestant that failed (a *FailedError: none of its values, not
// even its cost or latency, says anything about the model).
func (g *Gate) Check(r *Results) (bool, string, error) {
	l, err := g.left.eval(r)
	if err != nil {
		return false, "", fmt.Errorf("gate %q: %w", g.Expr, err)
	}
	rv, err := g.right.eval(r)
	if err != nil {
		return false, "", fmt.Errorf("gate %q: %w", g.Expr, err)
	}
	var ok bool
	switch g.op {
	case ">=":
		ok = l >= rv
	case ">":
		ok = l > rv
	case "<=":
		ok = l <= rv
	case "<":
		ok = l < rv
	case "==":
		ok = l == rv
	case "!=":
		ok = l != rv
	}
	verdict := "passes"
	if !ok {
		verdict = "fails"
	}
	line := fmt.Sprintf("%s: %s = %.4g %s %.4g: %s", g.Expr, g.left, l, g.op, rv, verdict)
	seen := map[string]bool{}
	for _, n := range append(refs(g.left), refs(g.right)...) {
		if c := r.Contestant(n.contestant); c != nil && c.Status == "partial" && !seen[c.Name] {
			seen[c.Name] = true
			line += fmt.Sprintf(" (%s is partial: %d of %d cases answered)", c.Name, c.Answered, c.Asked)
		}
	}
	return ok, line, nil
}

// FailedError is the error of a gate that names a contestant that
// answered no case.
type FailedError struct {
	Contestant, Column string
	Reason             string // the contestant's error
	Asked              int
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("%s has no %s score (status failed: %s): it answered none of the %d cases", e.Contestant, e.Column, e.Reason, e.Asked)
}

// refs lists the CONTESTANT.COLUMN values of an expression.
func refs(n node) []refNode {
	switch n := n.(type) {
	case refNode:
		return []refNode{n}
	case binNode:
		return append(refs(n.l), refs(n.r)...)
	case parenNode:
		return refs(n.n)
	case negNode:
		return refs(n.n)
	}
	return nil
}

type node interface {
	eval(r *Results) (float64, error)
	String() string
}

type numNode float64

func (n numNode) eval(*Results) (float64, error) { return float64(n), nil }
func (n numNode) String() string                 { return strconv.FormatFloat(float64(n), 'g', -1, 64) }

type refNode struct{ contestant, column string }

func (n refNode) String() string { return n.contestant + "." + n.column }

func (n refNode) eval(r *Results) (float64, error) {
	c := r.Contestant(n.contestant)
	if c == nil {
		var names []string
		for _, c := range r.Contestants {
			names = append(names, c.Name)
		}
		return 0, fmt.Errorf("no contestant %q (there are: %s)", n.contestant, strings.Join(names, ", "))
	}
	if c.Status == "failed" {
		return 0, &FailedError{Contestant: c.Name, Column: n.column, Reason: c.Error, Asked: c.Asked}
	}
	switch n.column {
	case "cost_usd":
		return c.Cost, nil
	case "latency_p50_ms":
		return c.LatencyP50MS, nil
	case "latency_p95_ms":
		return c.LatencyP95MS, nil
	case "failed":
		return float64(c.Failed), nil
	case "answered":
		return float64(c.Answered), nil
	}
	if s, ok := c.Scores[n.column]; ok {
		return s.Value, nil
	}
	for _, m := range r.Metrics {
		for _, col := range m.Columns {
			if col == n.column {
				return 0, fmt.Errorf("%s has no %s score (status %s: %s)", n.contestant, n.column, c.Status, c.Error)
			}
		}
	}
	var cols []string
	for _, m := range r.Metrics {
		cols = append(cols, m.Columns...)
	}
	cols = append(cols, "cost_usd", "latency_p50_ms", "latency_p95_ms", "failed", "answered")
	return 0, fmt.Errorf("no column %q (there are: %s)", n.column, strings.Join(cols, ", "))
}

type binNode struct {
	op   byte
	l, r node
}

func (n binNode) String() string { return fmt.Sprintf("%s %c %s", n.l, n.op, n.r) }

func (n binNode) eval(r *Results) (float64, error) {
	a, err := n.l.eval(r)
	if err != nil {
		return 0, err
	}
	b, err := n.r.eval(r)
	if err != nil {
		return 0, err
	}
	switch n.op {
	case '+':
		return a + b, nil
	case '-':
		return a - b, nil
	case '*':
		return a * b, nil
	}
	if b == 0 {
		return math.NaN(), fmt.Errorf("division by zero in %s", n)
	}
	return a / b, nil
}

type parenNode struct{ n node }

func (p parenNode) eval(r *Results) (float64, error) { return p.n.eval(r) }
func (p parenNode) String() string                   { return "(" + p.n.String() + ")" }

type negNode struct{ n node }

func (p negNode) eval(r *Results) (float64, error) {
	v, err := p.n.eval(r)
	return -v, err
}
func (p negNode) String() string { return "-" + p.n.String() }

// The gate's tokens.
type tokKind int

const (
	tokEOF tokKind = iota
	tokNum
	tokRef
	tokOp
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func (t token) describe() string {
	if t.kind == tokEOF {
		return "the end"
	}
	return fmt.Sprintf("%q at column %d", t.text, t.pos+1)
}

type gateParser struct {
	src  string
	toks []token
	i    int
}

func (p *gateParser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "<=") || strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!="):
			p.toks = append(p.toks, token{tokOp, s[i : i+2], i})
			i += 2
		case strings.ContainsRune("+-*/()<>", c):
			p.toks = append(p.toks, token{tokOp, s[i : i+1], i})
			i++
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				((s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			if _, err := strconv.ParseFloat(s[i:j], 64); err != nil {
				return fmt.Errorf("%q at column %d is not a number", s[i:j], i+1)
			}
			p.toks = append(p.toks, token{tokNum, s[i:j], i})
			i = j
		case c == '_' || unicode.IsLetter(c):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '-' || s[j] == '.' || s[j] >= '0' && s[j] <= '9' || unicode.IsLetter(rune(s[j]))) {
				j++
			}
			// A name may hold '-' ("llama-3b"), but "tuned.accuracy-base.accuracy"
			// is a subtraction: a '-' is part of a name only before the dot.
			ref := s[i:j]
			if dot := strings.IndexByte(ref, '.'); dot >= 0 {
				if k := strings.IndexByte(ref[dot:], '-'); k >= 0 {
					ref = ref[:dot+k]
				}
			}
			p.toks = append(p.toks, token{tokRef, ref, i})
			i += len(ref)
		default:
			return fmt.Errorf("unexpected %q at column %d", c, i+1)
		}
	}
	return nil
}

func (p *gateParser) peek() token {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return token{kind: tokEOF, pos: len(p.src)}
}

func (p *gateParser) next() token {
	t := p.peek()
	if p.i < len(p.toks) {
		p.i++
	}
	return t
}

func (p *gateParser) sum() (node, error) {
	n, err := p.product()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tokOp && (t.text == "+" || t.text == "-"); t = p.peek() {
		p.next()
		r, err := p.product()
		if err != nil {
			return nil, err
		}
		n = binNode{t.text[0], n, r}
	}
	return n, nil
}

func (p *gateParser) product() (node, error) {
	n, err := p.unary()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tokOp && (t.text == "*" || t.text == "/"); t = p.peek() {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		n = binNode{t.text[0], n, r}
	}
	return n, nil
}

func (p *gateParser) unary() (node, error) {
	t := p.next()
	switch {
	case t.kind == tokOp && t.text == "-":
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return negNode{n}, nil
	case t.kind == tokOp && t.text == "(":
		n, err := p.sum()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.text != ")" {
			return nil, fmt.Errorf("expected ')' but found %s", c.describe())
		}
		return parenNode{n}, nil
	case t.kind == tokNum:
		v, _ := strconv.ParseFloat(t.text, 64)
		return numNode(v), nil
	case t.kind == tokRef:
		name, col, ok := strings.Cut(t.text, ".")
		if !ok || name == "" || col == "" || strings.Contains(col, ".") {
			return nil, fmt.Errorf("%q at column %d: write CONTESTANT.COLUMN (tuned.accuracy)", t.text, t.pos+1)
		}
		return refNode{name, col}, nil
	}
	return nil, fmt.Errorf("expected a number, CONTESTANT.COLUMN or '(' but found %s", t.describe())
}
