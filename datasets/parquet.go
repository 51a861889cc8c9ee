package datasets

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// parquetSource reads a Parquet file row group by row group, a few rows at
// a time, rebuilding each row as the nested value its schema describes (a
// list-of-struct "messages" column becomes a list of objects, as Hugging
// Face datasets write it).
type parquetSource struct {
	name   string
	f      *os.File
	file   *parquet.File
	groups []parquet.RowGroup
	group  int // current row group
	rows   parquet.Rows
	buf    []parquet.Row
	n, i   int // rows in buf, next row of buf
	inRG   int // index in the row group of the next row
	first  int // index in the file of the row group's first row
	// groupDone: the rows in buf are the row group's last
	groupDone bool
}

func openParquet(f *os.File, name string) (*parquetSource, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	return &parquetSource{name: name, f: f, file: pf, groups: pf.RowGroups(), buf: make([]parquet.Row, 16)}, nil
}

func (s *parquetSource) row() (map[string]any, string, error) {
	for s.i == s.n {
		if err := s.fill(); err != nil {
			return nil, "", err
		}
	}
	row := s.buf[s.i]
	s.i++
	at := fmt.Sprintf("%s: row %d (row group %d, row %d)", s.name, s.first+s.inRG, s.group, s.inRG)
	s.inRG++
	v, err := s.reconstruct(row)
	if err != nil {
		return nil, at, errf("", "cannot read the row: %v", err)
	}
	return v, at, nil
}

// fill reads the next rows of the current row group, moving on to the next
// group when it is done; io.EOF after the last.
func (s *parquetSource) fill() error {
	if s.groupDone {
		s.rows.Close()
		s.rows, s.groupDone = nil, false
		s.first += int(s.groups[s.group].NumRows())
		s.group++
	}
	if s.rows == nil {
		if s.group >= len(s.groups) {
			return io.EOF
		}
		s.rows, s.inRG = s.groups[s.group].Rows(), 0
	}
	n, err := s.rows.ReadRows(s.buf)
	s.n, s.i = n, 0
	if errors.Is(err, io.EOF) {
		s.groupDone = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: row group %d: %w", s.name, s.group, err)
	}
	return nil
}

func (s *parquetSource) reconstruct(row parquet.Row) (v map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil { // parquet-go panics on rows that do not match the schema
			err = fmt.Errorf("%v", p)
		}
	}()
	v = map[string]any{}
	if err := s.file.Schema().Reconstruct(&v, row); err != nil {
		return nil, err
	}
	for k, x := range v {
		v[k] = bytesToStrings(x)
	}
	return v, nil
}

// bytesToStrings turns binary values (byte arrays without a STRING
// annotation) into strings, which are then checked for UTF-8 like any text.
func bytesToStrings(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		for i := range x {
			x[i] = bytesToStrings(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = bytesToStrings(x[k])
		}
	}
	return v
}

func (s *parquetSource) close() error {
	if s.rows != nil {
		s.rows.Close()
		s.rows = nil
	}
	return s.f.Close()
}
