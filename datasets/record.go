package datasets

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"` // "system", "user" or "assistant"
	Content string `json:"content"`
	// Mask keeps an assistant turn as context without training on it
	// (OpenAI's "weight": 0). Unused for other roles.
	Mask bool `json:"mask,omitempty"`
}

// Record is one row of a data file, normalised: a conversation for every
// format but plain text.
type Record struct {
	Messages []Message `json:"messages,omitempty"` // a conversation ending with an assistant turn
	// Rejected is, for a preference pair (format "preference"), the
	// rejected conversation; Messages is then the chosen one. Both begin
	// with the pair's prompt, Messages[:PromptTurns], whose assistant
	// turns are masked: only the answers after it are scored.
	Rejected    []Message `json:"rejected,omitempty"`
	PromptTurns int       `json:"prompt_turns,omitempty"`
	Text        string    `json:"text,omitempty"`  // plain text (format "text")
	Label       string    `json:"label,omitempty"` // optional label, for evals
	Format      Format    `json:"format"`
	Source      string    `json:"source"` // "file:line", or "file: row N (row group G, row R)" for Parquet
}

// Format names a record format.
type Format string

const (
	FormatMessages   Format = "messages"          // OpenAI chat: {"messages": [{"role", "content", "weight"}]}
	FormatShareGPT   Format = "sharegpt"          // {"conversations": [{"from", "value"}]}
	FormatAlpaca     Format = "alpaca"            // {"instruction", "input", "output"}
	FormatCompletion Format = "prompt-completion" // {"prompt", "completion"}
	FormatText       Format = "text"              // {"text"}
	FormatFields     Format = "fields"            // columns named by Fields.Prompt and Fields.Response
	// FormatPreference is a preference pair as TRL reads it:
	// {"prompt", "chosen", "rejected"}, the prompt a string or a list of
	// turns and the answers strings or lists of assistant turns; or
	// {"chosen", "rejected"} as whole conversations sharing a prefix.
	FormatPreference Format = "preference"
)

// Formats lists the record formats with what they look like.
func Formats() []string {
	return []string{
		`messages: {"messages": [{"role": "system|user|assistant", "content": "...", "weight": 0|1}]} (OpenAI chat)`,
		`sharegpt: {"conversations": [{"from": "system|human|gpt", "value": "..."}]}`,
		`alpaca: {"instruction": "...", "input": "...", "output": "..."}`,
		`prompt-completion: {"prompt": "...", "completion": "..."}`,
		`text: {"text": "..."}`,
		`fields: any columns, named with Fields (prompt, response, system, label)`,
		`preference: {"prompt": "..." or [turns], "chosen": "..." or [assistant turns], "rejected": ...}, or {"chosen": [turns], "rejected": [turns]} sharing a prompt (TRL's preference pairs)`,
	}
}

func (f Format) valid() bool {
	switch f {
	case "", FormatMessages, FormatShareGPT, FormatAlpaca, FormatCompletion, FormatText, FormatFields, FormatPreference:
		return true
	}
	return false
}

// Fields names the columns of a record that hold its parts. Prompt and
// Response make the format "fields" (a user turn and an assistant turn);
// System and Label apply to every format.
type Fields struct {
	Prompt   string `json:",omitempty"`
	Response string `json:",omitempty"`
	System   string `json:",omitempty"` // a per-record system prompt
	Label    string `json:",omitempty"` // default: a "label" field when there is one
}

// ReadOptions say how records are read.
type ReadOptions struct {
	// Format is the record format; "" detects it from each file's first
	// record (and then every record of the file must have that format).
	Format Format
	Fields Fields
	// System is a system prompt given to every conversation that has none.
	System string
	// Prompts reads records as prompts to be answered (distillation's
	// input), not as training examples: a conversation may end with a user
	// turn, a prompt-completion row may lack its completion, and a row
	// with only a "prompt" field is one.
	Prompts bool
}

func (o *ReadOptions) check() error {
	if !o.Format.valid() {
		return fmt.Errorf("unknown record format %q (want one of messages, sharegpt, alpaca, prompt-completion, text, fields, preference)", o.Format)
	}
	mapped := o.Fields.Prompt != "" || o.Fields.Response != ""
	switch {
	case mapped && o.Format != "" && o.Format != FormatFields:
		return fmt.Errorf("the prompt and response fields are mapped, so the format is %q, not %q", FormatFields, o.Format)
	case mapped && (o.Fields.Prompt == "" || o.Fields.Response == ""):
		return fmt.Errorf("map both the prompt and the response field (got prompt %q, response %q)", o.Fields.Prompt, o.Fields.Response)
	case o.Format == FormatFields && !mapped:
		return fmt.Errorf("format %q needs the prompt and response fields mapped", FormatFields)
	case !utf8.ValidString(o.System):
		return fmt.Errorf("the system prompt is not valid UTF-8")
	}
	if mapped {
		o.Format = FormatFields
	}
	return nil
}

// RowError is a bad row: where it is, the field, and what was expected.
// Reading can go on after one.
type RowError struct {
	Source string `json:"source"`          // "file:line", or "file: row N (row group G, row R)" for Parquet
	Field  string `json:"field,omitempty"` // "messages[2].role"; "" for the whole row
	Msg    string `json:"error"`
}

func (e *RowError) Error() string {
	if e.Field == "" {
		return e.Source + ": " + e.Msg
	}
	return e.Source + ": " + e.Field + ": " + e.Msg
}

// fieldError is a RowError before its source is known.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func errf(field, format string, args ...any) *fieldError {
	return &fieldError{field, fmt.Sprintf(format, args...)}
}

// detectFormat names the format of a record from its fields.
func detectFormat(row map[string]any, prompts bool) (Format, *fieldError) {
	has := func(k string) bool { _, ok := row[k]; return ok }
	switch {
	case has("chosen") && has("rejected"):
		return FormatPreference, nil
	case has("messages"):
		return FormatMessages, nil
	case has("conversations"):
		return FormatShareGPT, nil
	case has("instruction") && has("output"):
		return FormatAlpaca, nil
	case has("prompt") && (has("completion") || prompts):
		return FormatCompletion, nil
	case has("text"):
		return FormatText, nil
	}
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "", errf("", "cannot tell the record format from its fields (%s): want messages, conversations, instruction+output, prompt+completion, chosen+rejected or text; or name the format, or map the prompt and response fields", strings.Join(keys, ", "))
}

// toRecord normalises a row of format f.
func toRecord(row map[string]any, f Format, o *ReadOptions) (Record, *fieldError) {
	rec := Record{Format: f}
	var err *fieldError
	switch f {
	case FormatMessages:
		if err = noTools(row); err != nil {
			break
		}
		rec.Messages, err = chatMessages(row, "messages", "role", "content")
	case FormatShareGPT:
		rec.Messages, err = chatMessages(row, "conversations", "from", "value")
		if err == nil {
			err = prependSystem(&rec, row, "system")
		}
	case FormatAlpaca:
		var ins, in, out string
		if ins, err = str(row, "instruction", true); err != nil {
			break
		}
		if in, err = str(row, "input", false); err != nil {
			break
		}
		if out, err = str(row, "output", true); err != nil {
			break
		}
		if in != "" {
			ins += "\n\n" + in
		}
		rec.Messages = []Message{{Role: "user", Content: ins}, {Role: "assistant", Content: out}}
	case FormatCompletion, FormatFields:
		pk, rk := "prompt", "completion"
		if f == FormatFields {
			pk, rk = o.Fields.Prompt, o.Fields.Response
		}
		var p, c string
		if p, err = str(row, pk, true); err != nil {
			break
		}
		if c, err = str(row, rk, !o.Prompts); err != nil {
			break
		}
		rec.Messages = []Message{{Role: "user", Content: p}, {Role: "assistant", Content: c}}
		if c == "" && o.Prompts {
			rec.Messages = rec.Messages[:1]
		}
	case FormatText:
		rec.Text, err = str(row, "text", true)
	case FormatPreference:
		rec.Messages, rec.Rejected, rec.PromptTurns, err = preferencePair(row)
	}
	if err != nil {
		return rec, err
	}
	turns := len(rec.Messages)
	if o.Fields.System != "" && rec.Messages != nil {
		if err := prependSystem(&rec, row, o.Fields.System); err != nil {
			return rec, err
		}
	}
	if o.System != "" && rec.Messages != nil && rec.Messages[0].Role != "system" {
		rec.Messages = slices.Insert(rec.Messages, 0, Message{Role: "system", Content: o.System})
	}
	if rec.Rejected != nil && len(rec.Messages) > turns {
		// A system prompt given by the options or a field: the rejected
		// conversation gets it too, as part of the prompt.
		rec.Rejected = slices.Insert(rec.Rejected, 0, rec.Messages[0])
		rec.PromptTurns++
	}
	if rec.Messages != nil {
		if err := checkConversation(rec.Messages, f, o.Prompts); err != nil {
			return rec, err
		}
	}
	if rec.Rejected != nil {
		if err := checkConversation(rec.Rejected, f, false); err != nil {
			err.field = strings.Replace(err.field, "chosen", "rejected", 1)
			return rec, err
		}
	}
	lk, required := o.Fields.Label, true
	if lk == "" {
		lk, required = "label", false
	}
	if v, ok := row[lk]; ok && v != nil {
		if rec.Label, err = scalarString(v, lk); err != nil {
			return rec, err
		}
	} else if required {
		return rec, errf(lk, "missing field (the label field)")
	}
	return rec, nil
}

// prependSystem puts the string field key, when present and not empty, in
// front of the conversation as its system prompt.
func prependSystem(rec *Record, row map[string]any, key string) *fieldError {
	s, err := str(row, key, false)
	if err != nil || s == "" {
		return err
	}
	if rec.Messages[0].Role == "system" {
		return errf(key, "the conversation already has a system prompt")
	}
	rec.Messages = slices.Insert(rec.Messages, 0, Message{Role: "system", Content: s})
	return nil
}

var roles = map[string]string{
	"system": "system", "user": "user", "assistant": "assistant",
	// ShareGPT's names
	"human": "user", "gpt": "assistant", "chatgpt": "assistant", "model": "assistant",
}

// chatMessages reads a list of turns; roleKey and contentKey name their
// fields ("role"/"content", ShareGPT's "from"/"value").
func chatMessages(row map[string]any, key, roleKey, contentKey string) ([]Message, *fieldError) {
	v, ok := row[key]
	if !ok {
		return nil, errf(key, "missing field")
	}
	if s, ok := v.(string); ok { // a JSON column of a CSV file
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, errf(key, "want a list of turns, got a string that is not JSON (%v)", err)
		}
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errf(key, "want a list of turns, got %s", typeName(v))
	}
	if len(list) == 0 {
		return nil, errf(key, "empty conversation")
	}
	msgs := make([]Message, len(list))
	for i, t := range list {
		at := fmt.Sprintf("%s[%d]", key, i)
		turn, ok := t.(map[string]any)
		if !ok {
			return nil, errf(at, "want an object with %q and %q, got %s", roleKey, contentKey, typeName(t))
		}
		r, err := str(turn, roleKey, true)
		if err != nil {
			return nil, prefixed(at, err)
		}
		if key == "messages" {
			if err := noToolTurn(turn, r); err != nil {
				return nil, prefixed(at, err)
			}
		}
		role, ok := roles[strings.ToLower(r)]
		if !ok {
			if key == "conversations" {
				return nil, errf(at+"."+roleKey, "unknown role %q (want system, human or gpt)", r)
			}
			return nil, errf(at+"."+roleKey, "unknown role %q (want system, user or assistant)", r)
		}
		content, err := contentString(turn[contentKey], contentKey, turn)
		if err != nil {
			return nil, prefixed(at, err)
		}
		msgs[i] = Message{Role: role, Content: content}
		if w, ok := turn["weight"]; ok && w != nil {
			if role != "assistant" {
				return nil, errf(at+".weight", "only assistant turns have a weight")
			}
			switch x, ok := number(w); {
			case ok && x == 0, w == false:
				msgs[i].Mask = true
			case ok && x == 1, w == true:
			default:
				return nil, errf(at+".weight", "want 0 or 1, got %v", w)
			}
		}
	}
	return msgs, nil
}

// toolsHelp is what a row with tools is told to do.
const toolsHelp = "finetune trains text turns only, not function calling: leave this row out (or set data.max_bad_rows to skip such rows)"

// noTools refuses an OpenAI fine-tuning row that declares tools or
// functions: training on it would teach the calls without their schema.
func noTools(row map[string]any) *fieldError {
	for _, k := range []string{"tools", "functions"} {
		if v, ok := row[k]; ok && v != nil {
			return errf(k, "a row with %s: %s", k, toolsHelp)
		}
	}
	return nil
}

// noToolTurn refuses an OpenAI turn that calls a tool or answers one
// (role "tool" or "function", tool_calls or function_call on an assistant
// turn).
func noToolTurn(turn map[string]any, role string) *fieldError {
	switch strings.ToLower(role) {
	case "tool", "function":
		return errf("role", "a %s turn: %s", strings.ToLower(role), toolsHelp)
	}
	for _, k := range []string{"tool_calls", "function_call"} {
		if v, ok := turn[k]; ok && v != nil {
			if l, isList := v.([]any); isList && len(l) == 0 {
				continue
			}
			return errf(k, "a turn with %s: %s", k, toolsHelp)
		}
	}
	return nil
}

// contentString reads a turn's content: a string, or OpenAI's list of
// {"type": "text", "text": ...} parts.
func contentString(v any, key string, turn map[string]any) (string, *fieldError) {
	if _, ok := turn[key]; !ok {
		return "", errf(key, "missing field")
	}
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return "", errf(key, "text is not valid UTF-8 (byte %d)", invalidAt(v))
		}
		return v, nil
	case []any:
		var b strings.Builder
		for i, p := range v {
			part, ok := p.(map[string]any)
			at := fmt.Sprintf("%s[%d]", key, i)
			if !ok {
				return "", errf(at, "want a content part object, got %s", typeName(p))
			}
			if t, _ := part["type"].(string); t != "text" {
				return "", errf(at+".type", "only text content is supported, got %q", t)
			}
			s, err := str(part, "text", false)
			if err != nil {
				return "", prefixed(at, err)
			}
			b.WriteString(s)
		}
		return b.String(), nil
	case nil:
		return "", nil
	}
	return "", errf(key, "want a string, got %s", typeName(v))
}

// checkConversation applies the rules every trained conversation follows.
// A prompt (prompts) need not end with an assistant turn.
func checkConversation(msgs []Message, f Format, prompts bool) *fieldError {
	key := "messages"
	switch f {
	case FormatShareGPT:
		key = "conversations"
	case FormatAlpaca:
		key = "output"
	case FormatCompletion:
		key = "completion"
	case FormatFields:
		key = "response"
	case FormatPreference:
		key = "chosen"
	}
	first := -1
	for i, m := range msgs {
		if m.Role == "assistant" && strings.TrimSpace(m.Content) == "" {
			if f == FormatMessages || f == FormatShareGPT {
				return errf(fmt.Sprintf("%s[%d]", key, i), "empty assistant turn")
			}
			return errf(key, "empty assistant turn")
		}
		if first < 0 && m.Role != "system" {
			first = i
		}
	}
	switch {
	case first < 0:
		return errf(key, "the conversation has only system turns")
	case msgs[first].Role != "user":
		return errf(fmt.Sprintf("%s[%d]", key, first), "the conversation starts with an assistant turn (want a user turn first)")
	case msgs[len(msgs)-1].Role != "assistant" && !prompts:
		return errf(fmt.Sprintf("%s[%d]", key, len(msgs)-1), "the conversation does not end with an assistant turn")
	}
	return nil
}

// preferencePair reads a preference pair: the chosen and the rejected
// conversations, each the prompt followed by its answer, and the number of
// prompt turns. The prompt's assistant turns are masked.
func preferencePair(row map[string]any) (chosen, rejected []Message, promptTurns int, err *fieldError) {
	var prompt []Message
	_, hasPrompt := row["prompt"]
	if hasPrompt {
		if s, ok := row["prompt"].(string); ok && !looksLikeTurns(s) {
			p, err := str(row, "prompt", true)
			if err != nil {
				return nil, nil, 0, err
			}
			prompt = []Message{{Role: "user", Content: p}}
		} else if prompt, err = chatMessages(row, "prompt", "role", "content"); err != nil {
			return nil, nil, 0, err
		}
	}
	answer := func(key string) ([]Message, *fieldError) {
		if s, ok := row[key].(string); ok && !looksLikeTurns(s) {
			if !hasPrompt {
				return nil, errf(key, "an answer given as text needs a prompt field (or give chosen and rejected as whole conversations)")
			}
			a, err := str(row, key, true)
			if err != nil {
				return nil, err
			}
			return []Message{{Role: "assistant", Content: a}}, nil
		}
		return chatMessages(row, key, "role", "content")
	}
	if chosen, err = answer("chosen"); err != nil {
		return nil, nil, 0, err
	}
	if rejected, err = answer("rejected"); err != nil {
		return nil, nil, 0, err
	}
	if !hasPrompt {
		// Whole conversations: the prompt is what they share.
		n := 0
		for n < len(chosen) && n < len(rejected) && chosen[n] == rejected[n] {
			n++
		}
		for n > 0 && chosen[n-1].Role == "assistant" && (n == len(chosen) || n == len(rejected)) {
			n-- // an answer, not the prompt, when one side ends there
		}
		switch {
		case n == 0:
			return nil, nil, 0, errf("rejected[0]", "the chosen and rejected conversations share no prompt (give a prompt field, or conversations that begin alike)")
		case n == len(chosen):
			return nil, nil, 0, errf("chosen", "the chosen conversation has nothing after the prompt it shares with the rejected one")
		case n == len(rejected):
			return nil, nil, 0, errf("rejected", "the rejected conversation has nothing after the prompt it shares with the chosen one")
		}
		prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
	}
	for _, side := range []struct {
		key string
		ms  []Message
	}{{"chosen", chosen}, {"rejected", rejected}} {
		if side.ms[0].Role != "assistant" {
			return nil, nil, 0, errf(side.key+"[0]", "the answer after the prompt starts with a %s turn (want an assistant turn)", side.ms[0].Role)
		}
	}
	if len(prompt) == 0 || prompt[len(prompt)-1].Role == "assistant" {
		return nil, nil, 0, errf("prompt", "the prompt does not end with a user turn")
	}
	p := slices.Clone(prompt)
	for i := range p {
		if p[i].Role == "assistant" {
			p[i].Mask = true
		}
	}
	chosen = append(slices.Clone(p), chosen...)
	rejected = append(slices.Clone(p), rejected...)
	return chosen, rejected, len(p), nil
}

// looksLikeTurns says whether a string field holds a JSON list (a column
// of turns in a CSV file).
func looksLikeTurns(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "[") && json.Valid([]byte(t))
}

// str reads a string field; a missing or null field is "" unless required,
// and a required one must not be empty.
func str(row map[string]any, key string, required bool) (string, *fieldError) {
	v, ok := row[key]
	if !ok || v == nil {
		if required {
			return "", errf(key, "missing field")
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errf(key, "want a string, got %s", typeName(v))
	}
	if !utf8.ValidString(s) {
		return "", errf(key, "text is not valid UTF-8 (byte %d)", invalidAt(s))
	}
	if required && strings.TrimSpace(s) == "" {
		return "", errf(key, "empty text")
	}
	return s, nil
}

// scalarString turns a label (string, number or boolean) into text.
func scalarString(v any, key string) (string, *fieldError) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return "", errf(key, "text is not valid UTF-8 (byte %d)", invalidAt(v))
		}
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	if x, ok := number(v); ok {
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	}
	return "", errf(key, "want a string, number or boolean, got %s", typeName(v))
}

// number reads a JSON or Parquet number.
func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int64:
		return float64(v), true
	case int32:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}

func prefixed(at string, e *fieldError) *fieldError {
	if e.field == "" {
		return &fieldError{at, e.msg}
	}
	return &fieldError{at + "." + e.field, e.msg}
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, float32, int64, int32, int:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case []byte:
		return "binary data"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// invalidAt is the offset of the first byte of s that is not UTF-8.
func invalidAt(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return -1
}
