package recipes

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/finetune-dev/finetune/internal/textfmt"
)

// decoder fills Go values from YAML nodes strictly: every key must be a
// field, every scalar must fit its field's type, and every error names the
// file, the line and the key path. It records the line of every path it
// sets, so later checks can point at the line too.
type decoder struct {
	file  string
	lines map[string]int
}

// Error is a problem in a recipe, with its place.
type Error struct {
	File string
	Line int
	Path string // dotted key path, e.g. "train.learning_rate"
	Msg  string
}

func (e *Error) Error() string {
	msg := e.Msg
	if len(msg) > maxMsg {
		// A value echoed whole can be megabytes: one line stays readable.
		msg = strings.ToValidUTF8(textfmt.Shorten(msg, maxMsg), "") + fmt.Sprintf(" (%d bytes in all)", len(e.Msg))
	}
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path != "" {
		return fmt.Sprintf("%s: %s: %s", where, e.Path, msg)
	}
	return fmt.Sprintf("%s: %s", where, msg)
}

// maxMsg is the longest message an Error shows whole.
const maxMsg = 400

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// yamlName is the key of a struct field.
func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// fieldsOf lists the keys of a struct type and their field indexes.
func fieldsOf(t reflect.Type) (map[string]int, []string) {
	idx := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if name == "-" || !f.IsExported() {
			continue
		}
		idx[name] = i
		names = append(names, name)
	}
	return idx, names
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return d.decode(n.Content[0], v, path)
	}
	if n.Kind == yaml.AliasNode {
		return d.decode(n.Alias, v, path)
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value keeps the default
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "expected a section of keys, got %s", describe(n))
		}
		idx, names := fieldsOf(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			fi, ok := idx[key]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", key)
				if s := suggest(key, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += fmt.Sprintf(" (known keys: %s)", strings.Join(names, ", "))
				}
				return d.errf(k, path, "%s", msg)
			}
			if seen[key] {
				return d.errf(k, join(path, key), "given twice")
			}
			seen[key] = true
			if err := d.decode(val, v.Field(fi), join(path, key)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "expected a section of keys, got %s", describe(n))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, elem, join(path, k.Value)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
		return nil
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
			// A single value where a list is expected: a list of one.
			v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.ValueOf(n.Value)))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return d.errf(n, path, "expected a list, got %s", describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.errf(n, path, "expected a %s, got %s", kindName(v.Kind()), describe(n))
	}
	return d.scalar(n, v, path)
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	countType    = reflect.TypeOf(Count(0))
)

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) error {
	s := n.Value
	if v.Type() == durationType {
		// "30s", "2m", "1h30m"; a plain number is seconds.
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			f, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e9 {
				return d.errf(n, path, "expected a duration (like 30s, 2m or 1h30m), got %q", s)
			}
			dur = time.Duration(f * float64(time.Second))
		}
		v.SetInt(int64(dur))
		return nil
	}
	if v.Type() == countType {
		// A whole number, or "all" (0: every item).
		if strings.EqualFold(strings.TrimSpace(s), "all") {
			v.SetInt(0)
			return nil
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 10, 64)
		if err != nil {
			return d.errf(n, path, "expected a whole number or all, got %q", s)
		}
		v.SetInt(i)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.ToLower(s))
		if err != nil || n.Tag == "!!str" && n.Style != 0 {
			switch strings.ToLower(s) {
			case "yes", "on":
				b, err = true, nil
			case "no", "off":
				b, err = false, nil
			}
		}
		if err != nil {
			return d.errf(n, path, "expected true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil {
			if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				i, err = int64(f), nil
			}
		}
		if err != nil {
			return d.errf(n, path, "expected a whole number, got %q", s)
		}
		v.SetInt(i)
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		i, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil {
			return d.errf(n, path, "expected a whole number >= 0, got %q", s)
		}
		v.SetUint(i)
	case reflect.Float64, reflect.Float32:
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return d.errf(n, path, "expected a number, got %q", s)
		}
		v.SetFloat(f)
	default:
		return d.errf(n, path, "cannot hold a %s", kindName(v.Kind()))
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "text value"
	case reflect.Bool:
		return "true/false value"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "whole number"
	}
	return k.String()
}

// suggest returns the known key closest to key, if it is close enough to
// be a misspelling.
func suggest(key string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	limit := max(2, len(key)/3)
	if bestD <= limit || strings.Contains(best, key) && len(key) >= 3 {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// setPath sets the field at a dotted path from a YAML scalar text (a
// --set override). An empty text (or null) clears the field: a string
// becomes "", a number, list or section its zero, so that the default
// applies; cleared says so.
func setPath(root reflect.Value, path, text string, file string) (cleared bool, err error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		return false, fmt.Errorf("--set %s=%s: %v", path, text, err)
	}
	cleared = len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null"
	v := root
	parts := strings.Split(path, ".")
	for i, p := range parts {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			idx, names := fieldsOf(v.Type())
			fi, ok := idx[p]
			if !ok {
				msg := fmt.Sprintf("--set %s: unknown key %q", path, p)
				if s := suggest(p, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return false, fmt.Errorf("%s", msg)
			}
			v = v.Field(fi)
		case reflect.Map:
			if v.IsNil() {
				v.Set(reflect.MakeMap(v.Type()))
			}
			rest := reflect.ValueOf(strings.Join(parts[i:], "."))
			if cleared {
				v.SetMapIndex(rest, reflect.Value{})
				return true, nil
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			d := &decoder{file: "--set", lines: map[string]int{}}
			if err := d.decode(&n, elem, path); err != nil {
				return false, err
			}
			v.SetMapIndex(rest, elem)
			return false, nil
		default:
			return false, fmt.Errorf("--set %s: %q is not a section", path, strings.Join(parts[:i], "."))
		}
	}
	if cleared {
		v.Set(reflect.Zero(v.Type()))
		return true, nil
	}
	d := &decoder{file: "--set", lines: map[string]int{}}
	if err := d.decode(&n, v, path); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return false, fmt.Errorf("--set %s=%s: %s", path, text, e.Msg)
		}
		return false, err
	}
	return false, nil
}
