package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxRecordBytes bounds one JSON record (one JSONL line, one element of a
// JSON array): reading never holds more than this of one row.
const MaxRecordBytes = 64 << 20

// fileKinds maps a file extension (after a .gz is taken off) to its kind.
var fileKinds = map[string]string{
	".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
	".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
}

// Reader streams the records of a file, a folder or a glob of files, one at
// a time: memory holds one row (one Parquet page), never a whole file.
type Reader struct {
	opts    ReadOptions
	files   []string
	next    int // index in files of the next file to open
	cur     rowSource
	curFile string
	format  Format // the current file's format
	formats map[Format]int
	notes   []string
}

// Notes are what the reader fixed on the way, one line each (a UTF-8
// byte-order mark skipped).
func (r *Reader) Notes() []string { return r.notes }

// startsWithBOM reports whether a text file (gzip-compressed or not)
// begins with a UTF-8 byte-order mark.
func startsWithBOM(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false
		}
		defer zr.Close()
		in = zr
	}
	var b [3]byte
	n, _ := io.ReadFull(in, b[:])
	return n == 3 && b == [3]byte{0xEF, 0xBB, 0xBF}
}

// tableError is the refusal of a table whose columns are not mapped and
// that would be read as plain text: its "text" column alone, the others
// (a label, a category) ignored. It names the columns and suggests a
// mapping.
func tableError(file string, row map[string]any) error {
	var others []string
	for k := range row {
		if k != "text" {
			others = append(others, k)
		}
	}
	if len(others) == 0 {
		return nil
	}
	slices.Sort(others)
	resp := others[0]
	for _, k := range others {
		switch strings.ToLower(k) {
		case "label", "category", "intent", "class", "target", "answer", "output", "response":
			resp = k
		}
	}
	return fmt.Errorf("%s: a table with columns text, %s would be read as plain text, ignoring %s: map the columns, e.g. --field prompt=text --field response=%s --field label=%s (recipe: data.fields: {prompt: text, response: %s, label: %s}), or name the format (--format text, data.format: text) to train on the text column alone",
		file, strings.Join(others, ", "), strings.Join(others, ", "), resp, resp, resp, resp)
}

// rowSource yields the rows of one file.
type rowSource interface {
	// row returns the next row and where it is; io.EOF at the end. A
	// *fieldError is a bad row after which reading goes on; any other
	// error ends the file.
	row() (map[string]any, string, error)
	close() error
}

// Open opens pattern for reading: a file, a folder (every data file under
// it, in name order) or a glob. Files are .jsonl, .json, .csv, .tsv or
// .parquet, optionally gzip-compressed (.gz).
func Open(pattern string, opts ReadOptions) (*Reader, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	files, err := Files(pattern)
	if err != nil {
		return nil, err
	}
	return &Reader{opts: opts, files: files, formats: map[Format]int{}}, nil
}

// Files lists the data files pattern names: the file itself, the data files
// under a folder (in name order, hidden ones left out), or a glob's matches.
func Files(pattern string) ([]string, error) {
	if pattern == "" {
		return nil, errors.New("no data file given")
	}
	var files []string
	if strings.ContainsAny(pattern, "*?[") {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: bad glob: %w", pattern, err)
		}
		// Like a shell, * does not match hidden files.
		hiddenOK := strings.HasPrefix(filepath.Base(pattern), ".")
		for _, m := range matches {
			if strings.HasPrefix(filepath.Base(m), ".") && !hiddenOK {
				continue
			}
			if st, err := os.Stat(m); err == nil && !st.IsDir() {
				files = append(files, m)
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no files match", pattern)
		}
	} else {
		st, err := os.Stat(pattern)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file or folder", pattern)
		} else if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = []string{pattern}
		} else {
			err := filepath.WalkDir(pattern, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				hidden := strings.HasPrefix(d.Name(), ".") && p != pattern
				switch {
				case d.IsDir() && hidden:
					return filepath.SkipDir
				case !d.IsDir() && !hidden && kindOf(p) != "":
					files = append(files, p)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: the folder holds no data files (.jsonl, .json, .csv, .tsv, .parquet, optionally .gz)", pattern)
			}
		}
	}
	for _, f := range files {
		if kindOf(f) == "" {
			return nil, fmt.Errorf("%s: unknown kind of data file: want .jsonl, .json, .csv, .tsv or .parquet, optionally gzip-compressed (.gz)", f)
		}
	}
	return files, nil
}

func kindOf(path string) string {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".gz" {
		ext = strings.ToLower(filepath.Ext(strings.TrimSuffix(path, filepath.Ext(path))))
	}
	return fileKinds[ext]
}

// Files is the list of files the reader reads, in order.
func (r *Reader) Files() []string { return r.files }

// Formats counts the records read so far by format.
func (r *Reader) Formats() map[Format]int { return r.formats }

// Next returns the next record, io.EOF after the last. A *RowError is a bad
// row, naming where it is, the field and what was expected; Next can be
// called again to go on with the row after it. Any other error (an
// unreadable or corrupt file) ends reading.
func (r *Reader) Next() (Record, error) {
	for {
		if r.cur == nil {
			if r.next == len(r.files) {
				return Record{}, io.EOF
			}
			r.curFile = r.files[r.next]
			r.next++
			src, err := openSource(r.curFile)
			if err != nil {
				return Record{}, err
			}
			r.cur, r.format = src, r.opts.Format
			if k := kindOf(r.curFile); k != "parquet" && startsWithBOM(r.curFile) {
				r.notes = append(r.notes, r.curFile+": starts with a UTF-8 byte-order mark (as Excel and Notepad write them): skipped, not read as part of the first column's name or the first record")
			}
		}
		row, at, err := r.cur.row()
		if err == io.EOF {
			err = r.cur.close()
			r.cur = nil
			if err != nil {
				return Record{}, fmt.Errorf("%s: %w", r.curFile, err)
			}
			continue
		}
		var fe *fieldError
		if errors.As(err, &fe) {
			return Record{}, &RowError{Source: at, Field: fe.field, Msg: fe.msg}
		} else if err != nil {
			return Record{}, err
		}
		if r.format == "" {
			f, err := detectFormat(row, r.opts.Prompts)
			if err != nil {
				return Record{}, &RowError{Source: at, Msg: err.msg}
			}
			if k := kindOf(r.curFile); f == FormatText && (k == "csv" || k == "tsv" || k == "parquet") && r.opts.Fields.Label == "" {
				if err := tableError(r.curFile, row); err != nil {
					r.Close()
					return Record{}, err
				}
			}
			r.format = f
		}
		rec, ferr := toRecord(row, r.format, &r.opts)
		if ferr != nil {
			msg := ferr.msg
			if ferr.msg == "missing field" && r.opts.Format == "" && !strings.ContainsAny(ferr.field, ".[") {
				msg += fmt.Sprintf(" (the file's records are in the %s format, detected from its first record)", r.format)
			}
			return Record{}, &RowError{Source: at, Field: ferr.field, Msg: msg}
		}
		rec.Source = at
		r.formats[r.format]++
		return rec, nil
	}
}

// Close closes the file being read.
func (r *Reader) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.close()
	r.cur = nil
	return err
}

func openSource(path string) (rowSource, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file", path)
		}
		return nil, err
	}
	kind := kindOf(path)
	if kind == "parquet" {
		src, err := openParquet(f, path)
		if err != nil {
			f.Close()
			return nil, err
		}
		return src, nil
	}
	src, err := newSource(f, path, kind)
	if err != nil {
		f.Close()
		return nil, err
	}
	return src, nil
}

// newSource reads rows of a text file kind ("jsonl", "json", "csv", "tsv")
// from r, gzip-compressed or not; closing the source closes r.
func newSource(r io.ReadCloser, name, kind string) (rowSource, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var in io.Reader = br
	var closer io.Closer = r
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: bad gzip data: %w", name, err)
		}
		in = bufio.NewReaderSize(zr, 256<<10)
		closer = multiCloser{zr, r}
	}
	switch kind {
	case "jsonl":
		return &jsonlSource{name: name, r: in.(*bufio.Reader), c: closer}, nil
	case "json":
		return newJSONSource(in.(*bufio.Reader), name, closer)
	case "csv", "tsv":
		return newCSVSource(in, name, kind, closer)
	}
	return nil, fmt.Errorf("%s: cannot read %s files", name, kind)
}

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// jsonlSource reads one JSON object per line; blank lines are skipped.
type jsonlSource struct {
	name string
	r    *bufio.Reader
	c    io.Closer
	line int
	buf  []byte
}

func (s *jsonlSource) row() (map[string]any, string, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, "", err
		}
		s.line++
		if s.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\uFEFF")) // a byte-order mark
		}
		at := fmt.Sprintf("%s:%d", s.name, s.line)
		if line == nil {
			return nil, at, &fieldError{"", fmt.Sprintf("the line is longer than %d MiB", MaxRecordBytes>>20)}
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		row, ferr := jsonRow(line)
		if ferr != nil {
			return nil, at, ferr
		}
		return row, at, nil
	}
}

// readLine returns the next line without its newline, nil (and no error)
// for a line over MaxRecordBytes, which it skips, and io.EOF at the end.
func (s *jsonlSource) readLine() ([]byte, error) {
	s.buf = s.buf[:0]
	tooLong := false
	for {
		chunk, err := s.r.ReadSlice('\n')
		if !tooLong {
			s.buf = append(s.buf, chunk...)
			if len(s.buf) > MaxRecordBytes {
				tooLong, s.buf = true, s.buf[:0]
			}
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(s.buf) == 0 && !tooLong {
				return nil, io.EOF
			}
		case nil:
		default:
			return nil, fmt.Errorf("%s:%d: %w", s.name, s.line+1, err)
		}
		if tooLong {
			return nil, nil
		}
		if cap(s.buf) > 4<<20 && len(s.buf) < 1<<20 {
			s.buf = slices.Clip(s.buf) // let one huge line's buffer go
		}
		return bytes.TrimRight(s.buf, "\r\n"), nil
	}
}

func (s *jsonlSource) close() error { return s.c.Close() }

// jsonRow decodes one JSON object, naming the field that holds text that is
// not UTF-8 (encoding/json would silently replace it).
func jsonRow(raw []byte) (map[string]any, *fieldError) {
	if !utf8.Valid(raw) {
		return nil, errf(invalidUTF8Field(raw, ""), "text is not valid UTF-8")
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, errf("", "invalid JSON at column %d: %v", se.Offset, se)
		}
		return nil, errf("", "invalid JSON: %v", err)
	}
	row, ok := v.(map[string]any)
	if !ok {
		return nil, errf("", "want a JSON object, got %s", typeName(v))
	}
	return row, nil
}

// invalidUTF8Field finds the path of the field whose text is not UTF-8.
func invalidUTF8Field(raw []byte, at string) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			name := k
			if at != "" {
				name = at + "." + k
			}
			if !utf8.ValidString(k) {
				return name
			}
			if !utf8.Valid(obj[k]) {
				return invalidUTF8Field(obj[k], name)
			}
		}
		return at
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		for i, e := range list {
			if !utf8.Valid(e) {
				return invalidUTF8Field(e, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
	return at
}

// jsonSource reads a JSON array of objects element by element, or a
// stream of pretty-printed objects one after another. A .json file whose
// first line is a whole object is read as JSON Lines (what Hugging Face
// datasets' to_json writes).
type jsonSource struct {
	name   string
	dec    *json.Decoder
	lines  *lineCounter
	c      io.Closer
	n      int
	done   bool
	stream bool // objects one after another, not in an array
}

func newJSONSource(br *bufio.Reader, name string, c io.Closer) (rowSource, error) {
scan:
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: the file is empty", name)
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			continue
		}
		// Byte-order marks are not JSON, but editors write them.
		if b == 0xEF {
			if rest, _ := br.Peek(2); bytes.Equal(rest, []byte{0xBB, 0xBF}) {
				br.Discard(2)
				continue
			}
		}
		br.UnreadByte()
		switch b {
		case '{':
			if len(bytes.TrimSpace(firstLine(br))) > 1 {
				return &jsonlSource{name: name, r: br, c: c}, nil
			}
			lc := &lineCounter{r: br}
			return &jsonSource{name: name, dec: json.NewDecoder(lc), lines: lc, c: c, stream: true}, nil
		case '[':
			break scan
		default:
			return nil, fmt.Errorf("%s:1: want a JSON array of records (or one JSON object per line), got %q", name, b)
		}
	}
	lc := &lineCounter{r: br}
	dec := json.NewDecoder(lc)
	if _, err := dec.Token(); err != nil { // the '['
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &jsonSource{name: name, dec: dec, lines: lc, c: c}, nil
}

// firstLine peeks at the first line (at most 64 KiB of it) without
// reading further than its end.
func firstLine(br *bufio.Reader) []byte {
	for n := 1; ; n = br.Buffered() + 1 {
		b, err := br.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i]
		}
		if err != nil || n >= 64<<10 {
			return b
		}
	}
}

func (s *jsonSource) row() (map[string]any, string, error) {
	if s.done {
		return nil, "", io.EOF
	}
	if s.stream && !s.dec.More() {
		s.done = true
		if _, err := s.dec.Token(); err != io.EOF {
			return nil, "", fmt.Errorf("%s:%d: invalid JSON: unexpected %v", s.name, s.lines.lineAt(s.dec.InputOffset()), err)
		}
		return nil, "", io.EOF
	}
	if !s.stream && !s.dec.More() {
		s.done = true
		if _, err := s.dec.Token(); err != nil {
			return nil, "", s.syntax(err)
		}
		if _, err := s.dec.Token(); err != io.EOF {
			return nil, "", fmt.Errorf("%s:%d: unexpected data after the JSON array", s.name, s.lines.lineAt(s.dec.InputOffset()))
		}
		return nil, "", io.EOF
	}
	var raw json.RawMessage
	if err := s.dec.Decode(&raw); err != nil {
		// The array cannot be read past a syntax error.
		return nil, "", s.syntax(err)
	}
	s.n++
	start := s.dec.InputOffset() - int64(len(raw))
	at := fmt.Sprintf("%s:%d", s.name, s.lines.lineAt(start))
	if len(raw) > MaxRecordBytes {
		return nil, at, &fieldError{"", fmt.Sprintf("record %d is larger than %d MiB", s.n, MaxRecordBytes>>20)}
	}
	row, ferr := jsonRow(raw)
	if ferr != nil {
		return nil, at, ferr
	}
	return row, at, nil
}

func (s *jsonSource) syntax(err error) error {
	off := s.dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s:%d: invalid JSON: the file ends inside a record (truncated?)", s.name, s.lines.lineAt(s.lines.off))
	}
	where := "of the array"
	if s.stream {
		where = "of the file"
	}
	return fmt.Errorf("%s:%d: invalid JSON in record %d %s: %v", s.name, s.lines.lineAt(off), s.n+1, where, err)
}

func (s *jsonSource) close() error { return s.c.Close() }

// lineCounter tells the line of a byte offset in what it has read, for
// offsets that only grow; it keeps the newlines of the read-ahead only.
type lineCounter struct {
	r    io.Reader
	off  int64
	nl   []int64 // offsets of newlines not yet passed
	line int     // newlines passed
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		c.nl = append(c.nl, c.off+int64(i+j))
		i += j + 1
	}
	c.off += int64(n)
	return n, err
}

// lineAt is the 1-based line of offset off.
func (c *lineCounter) lineAt(off int64) int {
	i := 0
	for i < len(c.nl) && c.nl[i] < off {
		i++
	}
	c.line += i
	c.nl = append(c.nl[:0], c.nl[i:]...)
	return c.line + 1
}

// csvSource reads CSV or TSV with a header row; every value is a string.
type csvSource struct {
	name   string
	r      *csv.Reader
	c      io.Closer
	header []string
}

func newCSVSource(in io.Reader, name, kind string, c io.Closer) (rowSource, error) {
	r := csv.NewReader(in)
	if kind == "tsv" {
		r.Comma = '\t'
	}
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: the file is empty (want a header row naming the columns)", name)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	header = slices.Clone(header)
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\uFEFF"))
		if !utf8.ValidString(h) {
			return nil, fmt.Errorf("%s:1: column %d: the header is not valid UTF-8", name, i+1)
		}
		if seen[h] {
			return nil, fmt.Errorf("%s:1: column %q appears twice in the header", name, h)
		}
		seen[h], header[i] = true, h
	}
	r.FieldsPerRecord = len(header)
	return &csvSource{name: name, r: r, c: c, header: header}, nil
}

func (s *csvSource) row() (map[string]any, string, error) {
	rec, err := s.r.Read()
	if err == io.EOF {
		return nil, "", io.EOF
	}
	line, _ := s.r.FieldPos(0)
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		at := fmt.Sprintf("%s:%d", s.name, pe.StartLine)
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return nil, at, errf("", "%d columns, but the header has %d", len(rec), len(s.header))
		}
		return nil, at, errf("", "bad CSV: %v", pe.Err)
	} else if err != nil {
		return nil, "", fmt.Errorf("%s: %w", s.name, err)
	}
	at := fmt.Sprintf("%s:%d", s.name, line)
	row := make(map[string]any, len(rec))
	for i, v := range rec {
		if !utf8.ValidString(v) {
			return nil, at, errf(s.header[i], "text is not valid UTF-8 (byte %d)", invalidAt(v))
		}
		row[s.header[i]] = v
	}
	return row, at, nil
}

func (s *csvSource) close() error { return s.c.Close() }
