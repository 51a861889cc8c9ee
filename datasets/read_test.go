package datasets

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// readAll reads every record of pattern, failing on any error.
func readAll(t *testing.T, pattern string, opts ReadOptions) []Record {
	t.Helper()
	r, err := Open(pattern, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func user(s string) Message      { return Message{Role: "user", Content: s} }
func assistant(s string) Message { return Message{Role: "assistant", Content: s} }
func system(s string) Message    { return Message{Role: "system", Content: s} }

func TestFormats(t *testing.T) {
	for _, c := range []struct {
		name, file, content string
		opts                ReadOptions
		want                []Record
	}{
		{"openai messages", "chat.jsonl",
			`{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 0}, {"role": "user", "content": [{"type": "text", "text": "Name?"}]}, {"role": "assistant", "content": "Ada", "weight": 1}], "label": "greeting"}` + "\n",
			ReadOptions{},
			[]Record{{Messages: []Message{system("Be kind."), user("Hi"), {Role: "assistant", Content: "Hello", Mask: true}, user("Name?"), assistant("Ada")}, Label: "greeting", Format: FormatMessages, Source: "chat.jsonl:1"}}},
		{"sharegpt", "sg.jsonl",
			`{"system": "Terse.", "conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": "4"}]}` + "\n",
			ReadOptions{},
			[]Record{{Messages: []Message{system("Terse."), user("2+2"), assistant("4")}, Format: FormatShareGPT, Source: "sg.jsonl:1"}}},
		{"alpaca json array", "alpaca.json",
			"[\n  {\"instruction\": \"Add\", \"input\": \"2 and 3\", \"output\": \"5\"},\n  {\"instruction\": \"Greet\",\n   \"input\": \"\", \"output\": \"Hi\"}\n]\n",
			ReadOptions{System: "Sys."},
			[]Record{
				{Messages: []Message{system("Sys."), user("Add\n\n2 and 3"), assistant("5")}, Format: FormatAlpaca, Source: "alpaca.json:2"},
				{Messages: []Message{system("Sys."), user("Greet"), assistant("Hi")}, Format: FormatAlpaca, Source: "alpaca.json:3"}}},
		{"prompt completion", "pc.jsonl",
			`{"prompt": "The sky is", "completion": " blue", "label": 3}` + "\n\n" + `{"prompt": "Grass is", "completion": " green"}` + "\n",
			ReadOptions{},
			[]Record{
				{Messages: []Message{user("The sky is"), assistant(" blue")}, Label: "3", Format: FormatCompletion, Source: "pc.jsonl:1"},
				{Messages: []Message{user("Grass is"), assistant(" green")}, Format: FormatCompletion, Source: "pc.jsonl:3"}}},
		{"text", "t.jsonl", `{"text": "Once upon a time."}` + "\n", ReadOptions{System: "ignored for text"},
			[]Record{{Text: "Once upon a time.", Format: FormatText, Source: "t.jsonl:1"}}},
		{"csv with mapped fields", "qa.csv",
			"question,answer,sys,category\n\"What is\nwater?\",H2O,\"You are a chemist.\",science\nWhy?,\"Because, well\",,misc\n",
			ReadOptions{Fields: Fields{Prompt: "question", Response: "answer", System: "sys", Label: "category"}, System: "Default system."},
			[]Record{
				{Messages: []Message{system("You are a chemist."), user("What is\nwater?"), assistant("H2O")}, Label: "science", Format: FormatFields, Source: "qa.csv:2"},
				{Messages: []Message{system("Default system."), user("Why?"), assistant("Because, well")}, Label: "misc", Format: FormatFields, Source: "qa.csv:4"}}},
		{"tsv alpaca", "a.tsv", "instruction\tinput\toutput\nSay hi\t\tHi!\n", ReadOptions{},
			[]Record{{Messages: []Message{user("Say hi"), assistant("Hi!")}, Format: FormatAlpaca, Source: "a.tsv:2"}}},
		{"csv with a JSON messages column", "m.csv", "id,messages\n7,\"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"Hi\"\"}, {\"\"role\"\": \"\"assistant\"\", \"\"content\"\": \"\"Yo\"\"}]\"\n", ReadOptions{},
			[]Record{{Messages: []Message{user("Hi"), assistant("Yo")}, Format: FormatMessages, Source: "m.csv:2"}}},
		{"json lines named .json, byte-order mark", "hf.json", "\uFEFF" + `{"text": "a"}` + "\n" + `{"text": "b"}` + "\n", ReadOptions{},
			[]Record{{Text: "a", Format: FormatText, Source: "hf.json:1"}, {Text: "b", Format: FormatText, Source: "hf.json:2"}}},
		{"pretty-printed objects", "pp.json", "{\n  \"text\": \"a\"\n}\n{\n  \"text\": \"b\"\n}\n", ReadOptions{},
			[]Record{{Text: "a", Format: FormatText, Source: "pp.json:1"}, {Text: "b", Format: FormatText, Source: "pp.json:4"}}},
		{"named format", "n.jsonl", `{"text": "not this", "prompt": "P", "completion": "C"}` + "\n", ReadOptions{Format: FormatCompletion},
			[]Record{{Messages: []Message{user("P"), assistant("C")}, Format: FormatCompletion, Source: "n.jsonl:1"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, c.file), []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir) // sources name the file as given
			got := readAll(t, c.file, c.opts)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got\n%+v\nwant\n%+v", got, c.want)
			}
		})
	}
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFoldersGlobsAndGzip(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"b.jsonl":          []byte(`{"text": "b1"}` + "\n" + `{"text": "b2"}` + "\n"),
		"a.csv.gz":         gz(t, "text\na1\n"),
		"sub/c.json":       []byte(`[{"text": "c1"}]`),
		"sub/d.JSONL.GZ":   gz(t, `{"text": "d1"}`+"\n"),
		".hidden.jsonl":    []byte(`{"text": "hidden"}` + "\n"),
		".git/x.jsonl":     []byte(`{"text": "git"}` + "\n"),
		"notes.txt":        []byte("not data"),
		"docs/readme.md":   []byte("not data"),
		"gzip-named.jsonl": gz(t, `{"text": "g1"}`+"\n"), // compressed without .gz
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	texts := func(recs []Record) string {
		var s []string
		for _, r := range recs {
			s = append(s, r.Text)
		}
		return strings.Join(s, " ")
	}
	if got := texts(readAll(t, dir, ReadOptions{})); got != "a1 b1 b2 g1 c1 d1" {
		t.Fatalf("folder: %q", got)
	}
	if got := texts(readAll(t, filepath.Join(dir, "*.jsonl"), ReadOptions{})); got != "b1 b2 g1" {
		t.Fatalf("glob: %q", got)
	}
	for _, c := range []struct{ pattern, want string }{
		{filepath.Join(dir, "*.parquet"), "no files match"},
		{filepath.Join(dir, "missing.jsonl"), "no such file or folder"},
		{filepath.Join(dir, "notes.txt"), "unknown kind of data file"},
		{filepath.Join(dir, "docs"), "holds no data files"},
	} {
		if _, err := Open(c.pattern, ReadOptions{}); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.pattern) {
			t.Errorf("Open(%s): %v, want an error naming it with %q", c.pattern, err, c.want)
		}
	}
}

// TestBadRows checks that every kind of bad row gives an error naming the
// file and line, the field and what was expected, and that reading goes on
// with the next row.
func TestBadRows(t *testing.T) {
	good := `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}`
	for _, c := range []struct {
		name, file, row string
		want            string // the whole error
	}{
		{"invalid JSON", "d.jsonl", `{"messages": [}`, `d.jsonl:2: invalid JSON at column 15: invalid character '}' looking for beginning of value`},
		{"not an object", "d.jsonl", `["user", "Hi"]`, `d.jsonl:2: want a JSON object, got a list`},
		{"missing field", "d.jsonl", `{"conversations": []}`, `d.jsonl:2: messages: missing field (the file's records are in the messages format, detected from its first record)`},
		{"wrong type", "d.jsonl", `{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}`, `d.jsonl:2: messages[0].content: want a string, got a number`},
		{"wrong type list", "d.jsonl", `{"messages": {"role": "user"}}`, `d.jsonl:2: messages: want a list of turns, got an object`},
		{"unknown role", "d.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep"}]}`, `d.jsonl:2: messages[1].role: unknown role "robot" (want system, user or assistant)`},
		{"missing role", "d.jsonl", `{"messages": [{"content": "Hi"}, {"role": "assistant", "content": "x"}]}`, `d.jsonl:2: messages[0].role: missing field`},
		{"empty assistant turn", "d.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}`, `d.jsonl:2: messages[1]: empty assistant turn`},
		{"not ending with assistant", "d.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "And?"}]}`, `d.jsonl:2: messages[2]: the conversation does not end with an assistant turn`},
		{"starting with assistant", "d.jsonl", `{"messages": [{"role": "system", "content": "S"}, {"role": "assistant", "content": "Yo"}]}`, `d.jsonl:2: messages[1]: the conversation starts with an assistant turn (want a user turn first)`},
		{"bad weight", "d.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "weight": 0.5}]}`, `d.jsonl:2: messages[1].weight: want 0 or 1, got 0.5`},
		{"non-UTF-8", "d.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"caf\xe9\"}]}", `d.jsonl:2: messages[1].content: text is not valid UTF-8`},
		{"unknown format", "d.jsonl", `{"question": "Q", "answer": "A"}`, `d.jsonl:2: messages: missing field (the file's records are in the messages format, detected from its first record)`},
		{"tools", "d.jsonl", `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "tools": [{"type": "function", "function": {"name": "f"}}]}`, `d.jsonl:2: tools: a row with tools: ` + toolsHelp},
		{"tool calls", "d.jsonl", `{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "sun"}, {"role": "assistant", "content": "Sunny."}]}`, `d.jsonl:2: messages[1].tool_calls: a turn with tool_calls: ` + toolsHelp},
		{"tool turn", "d.jsonl", `{"messages": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "sun"}, {"role": "assistant", "content": "Sunny."}]}`, `d.jsonl:2: messages[1].role: a tool turn: ` + toolsHelp},
		{"sharegpt role", "s.jsonl", `{"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Yo"}]}`, `s.jsonl:2: conversations[1].from: unknown role "bot" (want system, human or gpt)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			first := good
			if c.file == "s.jsonl" {
				first = `{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}`
			}
			dir := t.TempDir()
			t.Chdir(dir)
			os.WriteFile(c.file, []byte(first+"\n"+c.row+"\n"+first+"\n"), 0o644)
			r, err := Open(c.file, ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			_, err = r.Next()
			var re *RowError
			if !errors.As(err, &re) || err.Error() != c.want {
				t.Fatalf("error\n%v\nwant\n%s", err, c.want)
			}
			if rec, err := r.Next(); err != nil || rec.Source != c.file+":3" {
				t.Fatalf("after a bad row: %+v, %v; want the next row", rec, err)
			}
		})
	}

	t.Run("undetectable first record", func(t *testing.T) {
		p := writeFile(t, "q.jsonl", `{"question": "Q", "answer": "A"}`+"\n")
		r, _ := Open(p, ReadOptions{})
		_, err := r.Next()
		if err == nil || !strings.Contains(err.Error(), p+":1: cannot tell the record format from its fields (answer, question)") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("csv", func(t *testing.T) {
		p := writeFile(t, "d.csv", "prompt,completion\nA,B\nonly one column\n\"caf\xe9\",C\nD,E\n")
		r, _ := Open(p, ReadOptions{})
		var errs []string
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				errs = append(errs, err.Error())
			}
		}
		want := []string{p + ":3: 1 columns, but the header has 2", p + ":4: prompt: text is not valid UTF-8 (byte 3)"}
		if !reflect.DeepEqual(errs, want) {
			t.Fatalf("errors %q, want %q", errs, want)
		}
	})
	t.Run("json array syntax error", func(t *testing.T) {
		p := writeFile(t, "d.json", "[\n{\"text\": \"a\"},\n{\"text\": \"b\",,}\n]")
		r, _ := Open(p, ReadOptions{})
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		_, err := r.Next()
		if err == nil || !strings.HasPrefix(err.Error(), p+":3: invalid JSON in record 2 of the array") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("json array truncated", func(t *testing.T) {
		p := writeFile(t, "d.json", "[\n{\"text\": \"a\"},\n{\"text\": \"b\"")
		r, _ := Open(p, ReadOptions{})
		r.Next()
		_, err := r.Next()
		if err == nil || !strings.Contains(err.Error(), p+":3: invalid JSON") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		p := writeFile(t, "d.jsonl", good+"\n")
		for _, c := range []struct {
			opts ReadOptions
			want string
		}{
			{ReadOptions{Format: "yaml"}, `unknown record format "yaml"`},
			{ReadOptions{Fields: Fields{Prompt: "q"}}, "map both the prompt and the response field"},
			{ReadOptions{Format: FormatFields}, "needs the prompt and response fields mapped"},
			{ReadOptions{Format: FormatAlpaca, Fields: Fields{Prompt: "q", Response: "a"}}, `the format is "fields", not "alpaca"`},
		} {
			if _, err := Open(p, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: %v, want %q", c.opts, err, c.want)
			}
		}
	})
	t.Run("mapped field missing", func(t *testing.T) {
		p := writeFile(t, "d.csv", "q,a\nQ,A\n")
		r, _ := Open(p, ReadOptions{Fields: Fields{Prompt: "q", Response: "answer"}})
		_, err := r.Next()
		if err == nil || err.Error() != p+":2: answer: missing field" {
			t.Fatalf("error %v", err)
		}
	})
}

// hfMessage and hfRow write Parquet as Hugging Face datasets (pyarrow)
// writes a chat dataset: every column optional, "messages" a LIST of
// optional structs with list/element groups.
type hfMessage struct {
	Content *string `parquet:"content,optional"`
	Role    *string `parquet:"role,optional"`
}

type hfRow struct {
	Messages []*hfMessage `parquet:"messages,optional,list"`
	Category *string      `parquet:"category,optional"`
	ID       *int64       `parquet:"id,optional"`
}

func ptr[T any](v T) *T { return &v }

func TestParquetHuggingFaceMessages(t *testing.T) {
	str := parquet.Optional(parquet.String())
	schema := parquet.NewSchema("schema", parquet.Group{
		"messages": parquet.Optional(parquet.List(parquet.Optional(parquet.Group{"content": str, "role": str}))),
		"category": str,
		"id":       parquet.Optional(parquet.Int(64)),
	})
	if !strings.Contains(schema.String(), "repeated group list") || !strings.Contains(schema.String(), "optional group element") {
		t.Fatalf("not the layout pyarrow writes:\n%s", schema)
	}
	path := filepath.Join(t.TempDir(), "train-00000-of-00001.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[hfRow](f, schema, parquet.MaxRowsPerRowGroup(2))
	msg := func(role, content string) *hfMessage { return &hfMessage{Role: ptr(role), Content: ptr(content)} }
	rows := []hfRow{
		{Messages: []*hfMessage{msg("user", "Hi"), msg("assistant", "Hello")}, Category: ptr("greeting"), ID: ptr(int64(1))},
		{Messages: []*hfMessage{msg("system", "Terse."), msg("user", "2+2"), msg("assistant", "4")}, ID: ptr(int64(2))},
		{Messages: []*hfMessage{msg("user", "Hi"), msg("robot", "Beep")}},
		{Messages: []*hfMessage{msg("user", "Bye"), {Role: ptr("assistant")}}},
		{Messages: []*hfMessage{msg("user", "Last"), msg("assistant", "Yes")}, Category: ptr("end")},
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	want := []Record{
		{Messages: []Message{user("Hi"), assistant("Hello")}, Label: "greeting", Format: FormatMessages, Source: path + ": row 0 (row group 0, row 0)"},
		{Messages: []Message{system("Terse."), user("2+2"), assistant("4")}, Format: FormatMessages, Source: path + ": row 1 (row group 0, row 1)"},
		{Messages: []Message{user("Last"), assistant("Yes")}, Label: "end", Format: FormatMessages, Source: path + ": row 4 (row group 2, row 0)"},
	}
	wantErrs := []string{
		path + `: row 2 (row group 1, row 0): messages[1].role: unknown role "robot" (want system, user or assistant)`,
		path + ": row 3 (row group 1, row 1): messages[1]: empty assistant turn",
	}
	got, errs := readWithErrors(t, path, ReadOptions{Fields: Fields{Label: "category"}})
	// Row 1 has no category, which the label mapping requires.
	mappedErrs := append([]string{path + ": row 1 (row group 0, row 1): category: missing field (the label field)"}, wantErrs...)
	if !reflect.DeepEqual(errs, mappedErrs) || !reflect.DeepEqual(got, []Record{want[0], want[2]}) {
		t.Fatalf("with the label mapped: records\n%+v\nerrors\n%q", got, errs)
	}
	got, errs = readWithErrors(t, path, ReadOptions{})
	want[0].Label, want[2].Label = "", ""
	if !reflect.DeepEqual(errs, wantErrs) || !reflect.DeepEqual(got, want) {
		t.Fatalf("records\n%+v\nwant\n%+v\nerrors\n%q\nwant\n%q", got, want, errs, wantErrs)
	}
}

// readWithErrors reads every record, collecting the bad rows' errors.
func readWithErrors(t *testing.T, path string, opts ReadOptions) ([]Record, []string) {
	t.Helper()
	r, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []Record
	var errs []string
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return got, errs
		}
		var re *RowError
		if errors.As(err, &re) {
			errs = append(errs, err.Error())
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
}

func TestParquetFlatColumns(t *testing.T) {
	type row struct {
		Instruction string `parquet:"instruction"`
		Input       string `parquet:"input"`
		Output      []byte `parquet:"output"` // binary without a STRING annotation
		Label       int32  `parquet:"label"`
	}
	path := filepath.Join(t.TempDir(), "alpaca.parquet")
	if err := parquet.WriteFile(path, []row{{"Add", "1 and 2", []byte("3"), 7}, {"Greet", "", []byte("Hi"), 8}}); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, path, ReadOptions{})
	want := []Record{
		{Messages: []Message{user("Add\n\n1 and 2"), assistant("3")}, Label: "7", Format: FormatAlpaca, Source: path + ": row 0 (row group 0, row 0)"},
		{Messages: []Message{user("Greet"), assistant("Hi")}, Label: "8", Format: FormatAlpaca, Source: path + ": row 1 (row group 0, row 1)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
	bad := writeFile(t, "bad.parquet", "PAR1 not really")
	if _, err := Open(bad, ReadOptions{}); err != nil {
		t.Fatal(err) // opening lists files; the file is read on Next
	}
	r, _ := Open(bad, ReadOptions{})
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), bad+": not a readable Parquet file") {
		t.Fatalf("corrupt parquet: %v", err)
	}
}

// TestReadingStreams shows that a record is handed on before the rest of
// the file exists: nothing reads a file whole.
func TestReadingStreams(t *testing.T) {
	for _, c := range []struct {
		kind, first, rest string
		gzip              bool
	}{
		{"jsonl", `{"text": "first"}` + "\n", `{"text": "second"}` + "\n", false},
		{"json", "[\n" + `{"text": "first"}`, `, {"text": "second"}]`, false},
		{"csv", "text\nfirst\n", "second\n", false},
		{"jsonl", `{"text": "first"}` + "\n", `{"text": "second"}` + "\n", true},
	} {
		t.Run(c.kind, func(t *testing.T) {
			pr, pw := io.Pipe()
			var zw *gzip.Writer
			var out io.Writer = pw
			if c.gzip {
				zw = gzip.NewWriter(pw)
				out = zw
			}
			firstDone := make(chan struct{})
			go func() {
				defer close(firstDone)
				out.Write([]byte(c.first))
				if zw != nil {
					zw.Flush()
				}
			}()
			type result struct {
				row map[string]any
				err error
			}
			got := make(chan result, 1)
			var src rowSource
			go func() {
				var err error
				src, err = newSource(pr, "pipe", c.kind)
				if err != nil {
					got <- result{nil, err}
					return
				}
				row, _, err := src.row()
				got <- result{row, err}
			}()
			select {
			case r := <-got:
				if r.err != nil || r.row["text"] != "first" {
					t.Fatalf("first row %v, %v", r.row, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first record did not come before the rest of the file was written")
			}
			go func() {
				<-firstDone // the pipe may still hold the end of the first write
				out.Write([]byte(c.rest))
				if zw != nil {
					zw.Close()
				}
				pw.Close()
			}()
			row, _, err := src.row()
			if err != nil || row["text"] != "second" {
				t.Fatalf("second row %v, %v", row, err)
			}
			if _, _, err := src.row(); err != io.EOF {
				t.Fatalf("after the last row: %v", err)
			}
		})
	}
}
