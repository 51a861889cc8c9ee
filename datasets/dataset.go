package datasets

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/finetune-dev/finetune/internal/llama"
)

// Overflow says what becomes of an example longer than MaxLength.
type Overflow string

const (
	Drop     Overflow = "drop"     // leave it out (the default): every trained answer is whole, end-of-turn token included
	Truncate Overflow = "truncate" // keep its first MaxLength tokens
)

// Config is what a recipe says about its data.
type Config struct {
	Train string // file, folder or glob
	// Eval is a separate eval file, folder or glob; when empty, EvalRatio
	// of the prompts are held out of Train for eval.
	Eval      string
	EvalRatio float64
	Seed      uint64
	ReadOptions
	RenderOptions
	// MaxLength is the context length (0: no limit).
	MaxLength int
	Overflow  Overflow
	// MaxBadRows is how many bad rows are skipped (and listed in the
	// report) before reading fails; 0 fails on the first.
	MaxBadRows int
	// KeepDuplicates keeps exact duplicate records (removed by default).
	KeepDuplicates bool
	// NearDuplicate is the similarity (Jaccard of the prompts' lowercased
	// word sets) from which a training prompt is counted as a near
	// duplicate of an eval prompt; 0: no near-duplicate check.
	NearDuplicate float64
	// DropLeaks leaves out of training the records whose prompt is an
	// eval prompt or a near duplicate of one (recipe: dedupe: near).
	DropLeaks bool
	// Workers render records in parallel (0: GOMAXPROCS); the result is
	// the same for any number.
	Workers int
}

func (c *Config) check() error {
	switch {
	case c.Train == "":
		return errors.New("no training data given")
	case c.EvalRatio < 0 || c.EvalRatio >= 1 || math.IsNaN(c.EvalRatio):
		return fmt.Errorf("eval ratio %g is not within [0, 1)", c.EvalRatio)
	case c.Eval != "" && c.EvalRatio > 0:
		return errors.New("give a separate eval file or an eval ratio, not both")
	case c.MaxLength < 0:
		return fmt.Errorf("max length %d is negative", c.MaxLength)
	case c.MaxBadRows < 0:
		return fmt.Errorf("max bad rows %d is negative", c.MaxBadRows)
	case c.NearDuplicate < 0 || c.NearDuplicate > 1 || math.IsNaN(c.NearDuplicate):
		return fmt.Errorf("near-duplicate similarity %g is not within [0, 1]", c.NearDuplicate)
	}
	switch c.Overflow {
	case "":
		c.Overflow = Drop
	case Drop, Truncate:
	default:
		return fmt.Errorf("unknown overflow %q (want drop or truncate)", c.Overflow)
	}
	return c.ReadOptions.check()
}

// Split is the part of the data an item belongs to.
type Split int

const (
	TrainSplit Split = iota
	EvalSplit
)

func (s Split) String() string {
	if s == EvalSplit {
		return "eval"
	}
	return "train"
}

// Item is one record as Scan hands it on. The evals package makes an eval
// item's Case with Renderer.Case.
type Item struct {
	Split  Split
	Record Record
	// Examples are the record's examples after the length rule (none when
	// it was dropped, or when Scan has no model).
	Examples []Example
}

// Report says what Scan read and what became of it.
type Report struct {
	TrainFiles []string       `json:"train_files"`
	EvalFiles  []string       `json:"eval_files,omitempty"`
	EvalSplit  string         `json:"eval_split"` // how the eval split was made
	Formats    map[Format]int `json:"formats"`    // records by detected format
	Template   string         `json:"template,omitempty"`
	MaxLength  int            `json:"max_length,omitempty"`
	Overflow   Overflow       `json:"overflow,omitempty"`
	Train      SplitReport    `json:"train"`
	Eval       SplitReport    `json:"eval"`
	// Leaks are eval prompts that also appear in training.
	Leaks    int    `json:"leaks"`
	LeakList []Leak `json:"leak_examples,omitempty"` // the first few
	// NearDuplicate is the similarity threshold of the near-duplicate
	// check (0: not checked).
	NearDuplicate float64 `json:"near_duplicate,omitempty"`
	// NearLeaks are training records whose prompt nearly (not exactly)
	// equals an eval prompt: the same words in another casing or order,
	// or a few words changed.
	NearLeaks    int        `json:"near_leaks"`
	NearLeakList []NearLeak `json:"near_leak_examples,omitempty"` // the first few
	// LeakedEval are the eval prompts with an exact or near duplicate in
	// training (of Eval.Records).
	LeakedEval int `json:"leaked_eval_prompts"`
	// LeaksDropped are the training records left out as exact or near
	// duplicates of an eval prompt (DropLeaks).
	LeaksDropped int `json:"leaks_dropped,omitempty"`
	// Labels describes the records' labels (nil when none has one).
	Labels *LabelReport `json:"labels,omitempty"`
	// Notes are what reading fixed on the way (a byte-order mark).
	Notes []string `json:"notes,omitempty"`
	// Skipped are the bad rows skipped (at most MaxBadRows).
	Skipped []*RowError `json:"skipped,omitempty"`
}

// Leak is a training record whose prompt is also an eval prompt.
type Leak struct {
	Train string `json:"train"`
	Eval  string `json:"eval"`
}

// SplitReport counts one split.
type SplitReport struct {
	Records    int `json:"records"`    // good records read
	Duplicates int `json:"duplicates"` // exact duplicates removed
	Examples   int `json:"examples"`   // examples kept
	Truncated  int `json:"truncated"`  // examples cut to MaxLength
	Dropped    int `json:"dropped"`    // examples over MaxLength left out
	// Unmeasured are the dropped records whose text alone, in bytes, is
	// more than MaxLength tokens can spell: dropped before tokenizing
	// (not in Lengths).
	Unmeasured int `json:"unmeasured,omitempty"`
	// Untrained are examples left out because no token of theirs is
	// trained (every assistant turn masked).
	Untrained int `json:"untrained,omitempty"`
	// Pairs are the preference pairs kept (two examples each: chosen and
	// rejected); a pair is kept or dropped whole. IdenticalPairs are those
	// whose chosen and rejected tokens are equal (they teach nothing),
	// TruncatedPairs those with a side cut to MaxLength, DroppedPairs
	// those left out for a side over it.
	Pairs          int   `json:"pairs,omitempty"`
	IdenticalPairs int   `json:"identical_pairs,omitempty"`
	TruncatedPairs int   `json:"truncated_pairs,omitempty"`
	DroppedPairs   int   `json:"dropped_pairs,omitempty"`
	Tokens         int64 `json:"tokens"`  // tokens of the kept examples
	Trained        int64 `json:"trained"` // of which trained
	// Lengths are the token lengths of the examples before the length
	// rule.
	Lengths Lengths `json:"lengths"`
}

// MaskedFraction is the fraction of kept tokens that are not trained.
func (s *SplitReport) MaskedFraction() float64 {
	if s.Tokens == 0 {
		return 0
	}
	return 1 - float64(s.Trained)/float64(s.Tokens)
}

// MaxLeakExamples is how many leaks a Report lists.
const MaxLeakExamples = 5

// Scan reads, splits, deduplicates, renders and tokenizes the data cfg
// names, streaming: each kept record is handed to fn (which may be nil) as
// it is read, eval records first when the eval data is a separate file,
// then the training data in file order. Memory holds one record at a time,
// plus 8 bytes per record for duplicate removal and per eval prompt for
// the leakage check.
//
// With a nil model, Scan reads and checks records only (no examples).
//
// Eval split: a separate eval file, or EvalRatio of the prompts chosen by
// a hash of the prompt and the seed, so that a prompt is never in both
// splits and the split does not depend on file order. Eval prompts that
// also appear in separate training data are counted as leaks (not
// removed). Bad rows fail the scan unless MaxBadRows allows skipping them.
func Scan(cfg Config, m *llama.Model, fn func(Item) error) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &scanner{cfg: cfg, fn: fn, rep: &Report{Formats: map[Format]int{}, MaxLength: cfg.MaxLength, Overflow: cfg.Overflow}}
	if cfg.NearDuplicate > 0 && (cfg.Eval != "" || cfg.EvalRatio > 0) {
		s.near = newNearIndex(cfg.NearDuplicate)
		s.rep.NearDuplicate = cfg.NearDuplicate
	}
	if m != nil {
		r, err := NewRenderer(m, cfg.RenderOptions)
		if err != nil {
			return nil, err
		}
		s.r = r
		s.rep.Template = r.Template()
	} else {
		s.rep.Overflow = ""
	}
	s.seen[TrainSplit], s.seen[EvalSplit] = map[uint64]struct{}{}, map[uint64]struct{}{}
	switch {
	case cfg.Eval != "":
		s.rep.EvalSplit = "separate eval data"
		s.evalPrompts = map[uint64]string{}
		files, err := s.read(cfg.Eval, func(Record) Split { return EvalSplit })
		s.rep.EvalFiles = files
		if err != nil {
			return s.rep, err
		}
	case cfg.EvalRatio > 0:
		s.rep.EvalSplit = fmt.Sprintf("%g of the prompts held out (seed %d)", cfg.EvalRatio, cfg.Seed)
		if s.near != nil {
			s.indexHeldOut()
		}
	default:
		s.rep.EvalSplit = "none"
	}
	files, err := s.read(cfg.Train, func(rec Record) Split {
		if cfg.EvalRatio > 0 && s.heldOut(rec) {
			return EvalSplit
		}
		return TrainSplit
	})
	s.rep.TrainFiles = files
	if s.near != nil {
		s.rep.LeakedEval = s.near.hits()
	}
	s.rep.Labels = s.labels.finish()
	s.rep.Train.Lengths.finish()
	s.rep.Eval.Lengths.finish()
	return s.rep, err
}

type scanner struct {
	cfg         Config
	fn          func(Item) error
	r           *Renderer
	rep         *Report
	seen        [2]map[uint64]struct{}
	evalPrompts map[uint64]string // eval prompt hash → its source
	near        *nearIndex        // the eval prompts' words, for the near-duplicate check
	labels      LabelReport
}

// indexHeldOut reads the training data once before the scan to index the
// prompts the eval ratio holds out, so that a training record read before
// its near duplicate in eval is found too. Reading without rendering is
// cheap beside the scan; bad rows are left to the scan to report.
func (s *scanner) indexHeldOut() {
	rd, err := Open(s.cfg.Train, s.cfg.ReadOptions)
	if err != nil {
		return
	}
	defer rd.Close()
	seen := map[uint64]struct{}{}
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return
		}
		var re *RowError
		if errors.As(err, &re) {
			continue
		} else if err != nil {
			return
		}
		if !s.heldOut(rec) {
			continue
		}
		h := recordHash(rec)
		if _, dup := seen[h]; dup && !s.cfg.KeepDuplicates {
			continue
		}
		seen[h] = struct{}{}
		s.near.add(rec)
	}
}

// job is one record on its way through read: checked and split in file
// order, rendered by any worker, accounted for in file order.
type job struct {
	split Split
	rec   Record
	err   error // a bad row, or (fatal) an unreadable file
	dup   bool  // an exact duplicate: counted, not rendered
	// long: a record surely longer than MaxLength by its byte length
	// alone, dropped without being rendered
	long bool
	leak string    // the eval record whose prompt this training record asks
	near *NearLeak // the eval prompt this training record's nearly asks
	// dropLeak: a training record left out as a leak (DropLeaks)
	dropLeak bool
	exs      []Example
	ready    chan struct{} // closed when exs and err are final
}

// read reads every record of pattern into the split split says. Records
// are read, split and deduplicated in order by one goroutine, rendered by
// Workers goroutines, and accounted for and handed to fn in file order, so
// that the result does not depend on the number of workers. At most a few
// records per worker are in flight.
func (s *scanner) read(pattern string, split func(Record) Split) ([]string, error) {
	rd, err := Open(pattern, s.cfg.ReadOptions)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	workers := s.cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if s.r == nil {
		workers = 0
	}
	order := make(chan *job, 4*max(workers, 1))
	work := make(chan *job, 4*max(workers, 1))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1 + workers)
	go func() { // the reader
		defer wg.Done()
		defer close(order)
		defer close(work)
		for {
			rec, err := rd.Next()
			if err == io.EOF {
				return
			}
			j := &job{rec: rec, err: err, ready: make(chan struct{})}
			if err == nil {
				j.split = split(rec)
				j.dup, j.leak = s.check(j.split, rec)
				if !j.dup && j.split == TrainSplit && s.near != nil {
					if id, sim, text := s.near.find(rec); id >= 0 && j.leak == "" {
						j.near = &NearLeak{Train: rec.Source, Eval: s.near.source[id], Similarity: math.Round(sim*1000) / 1000, TrainText: clip(text), EvalText: s.near.text[id]}
					}
				}
				j.dropLeak = s.cfg.DropLeaks && j.split == TrainSplit && (j.leak != "" || j.near != nil)
				if !j.dup && !j.dropLeak && s.r != nil {
					j.long = s.bound(&j.rec)
				}
			}
			select {
			case order <- j:
			case <-stop:
				return
			}
			if j.err != nil || j.dup || j.dropLeak || j.long || s.r == nil {
				close(j.ready)
			} else {
				select {
				case work <- j:
				case <-stop:
					return
				}
			}
			var re *RowError
			if err != nil && !errors.As(err, &re) {
				return // an unreadable file ends reading
			}
		}
	}()
	for range workers {
		go func() {
			defer wg.Done()
			for j := range work {
				j.exs, j.err = s.r.Render(j.rec)
				close(j.ready)
			}
		}()
	}
	err = s.account(order)
	close(stop)
	wg.Wait()
	for f, n := range rd.Formats() {
		s.rep.Formats[f] += n
	}
	s.rep.Notes = append(s.rep.Notes, rd.Notes()...)
	return rd.Files(), err
}

// check finds whether a record is a duplicate and, for training data
// beside a separate eval file, whether its prompt is an eval prompt.
func (s *scanner) check(split Split, rec Record) (dup bool, leak string) {
	if !s.cfg.KeepDuplicates {
		h := recordHash(rec)
		if _, dup := s.seen[split][h]; dup {
			return true, ""
		}
		s.seen[split][h] = struct{}{}
	}
	if split == EvalSplit && s.near != nil && s.cfg.Eval != "" {
		s.near.add(rec)
	}
	if s.evalPrompts != nil {
		p := promptHash(rec, 0)
		if split == EvalSplit {
			if _, ok := s.evalPrompts[p]; !ok {
				s.evalPrompts[p] = rec.Source
			}
		} else {
			leak = s.evalPrompts[p]
		}
	}
	return false, leak
}

// account takes the jobs in order: bad rows, counts, the length rule, fn.
func (s *scanner) account(order <-chan *job) error {
	for j := range order {
		<-j.ready
		var re *RowError
		if errors.As(j.err, &re) {
			if len(s.rep.Skipped) >= s.cfg.MaxBadRows {
				if s.cfg.MaxBadRows == 0 {
					return re
				}
				return fmt.Errorf("more than %d bad rows (max bad rows), the last: %w", s.cfg.MaxBadRows, re)
			}
			s.rep.Skipped = append(s.rep.Skipped, re)
			continue
		} else if j.err != nil {
			return j.err
		}
		st := &s.rep.Train
		if j.split == EvalSplit {
			st = &s.rep.Eval
		}
		if j.dup {
			st.Duplicates++
			continue
		}
		if j.near != nil {
			s.rep.NearLeaks++
			if len(s.rep.NearLeakList) < MaxNearExamples {
				s.rep.NearLeakList = append(s.rep.NearLeakList, *j.near)
			}
		}
		if j.dropLeak {
			if j.leak != "" {
				s.rep.Leaks++
				if len(s.rep.LeakList) < MaxLeakExamples {
					s.rep.LeakList = append(s.rep.LeakList, Leak{Train: j.rec.Source, Eval: j.leak})
				}
			}
			s.rep.LeaksDropped++
			continue
		}
		if j.long {
			st.Dropped++
			st.Unmeasured++
		}
		if j.leak != "" {
			s.rep.Leaks++
			if len(s.rep.LeakList) < MaxLeakExamples {
				s.rep.LeakList = append(s.rep.LeakList, Leak{Train: j.rec.Source, Eval: j.leak})
			}
		}
		item := Item{Split: j.split, Record: j.rec}
		if j.rec.Rejected != nil {
			s.accountPair(st, j, &item)
			if s.fn != nil {
				if err := s.fn(item); err != nil {
					return err
				}
			}
			continue
		}
		for _, ex := range j.exs {
			n := len(ex.Tokens)
			st.Lengths.add(n)
			if s.cfg.MaxLength > 0 && n > s.cfg.MaxLength {
				if s.cfg.Overflow == Drop {
					st.Dropped++
					continue
				}
				ex.Tokens, ex.Weights = ex.Tokens[:s.cfg.MaxLength], ex.Weights[:s.cfg.MaxLength]
				st.Truncated++
			}
			trained := ex.Trained()
			if trained == 0 && j.split == TrainSplit {
				st.Untrained++
				continue
			}
			st.Examples++
			st.Tokens += int64(len(ex.Tokens))
			st.Trained += int64(trained)
			item.Examples = append(item.Examples, ex)
		}
		st.Records++
		s.labels.add(j.split, j.rec.Label)
		if s.fn != nil {
			if err := s.fn(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// accountPair applies the length rule to a preference pair, whose chosen
// and rejected examples are kept or dropped together.
func (s *scanner) accountPair(st *SplitReport, j *job, item *Item) {
	st.Records++
	s.labels.add(j.split, j.rec.Label)
	if j.long {
		st.DroppedPairs++
		return
	}
	if len(j.exs) != 2 {
		return // no model: read and checked only
	}
	exs := slices.Clone(j.exs)
	cut := false
	for i := range exs {
		n := len(exs[i].Tokens)
		st.Lengths.add(n)
		if s.cfg.MaxLength > 0 && n > s.cfg.MaxLength {
			if s.cfg.Overflow == Drop {
				st.Dropped += 2
				st.DroppedPairs++
				return
			}
			exs[i].Tokens, exs[i].Weights = exs[i].Tokens[:s.cfg.MaxLength], exs[i].Weights[:s.cfg.MaxLength]
			cut = true
		}
	}
	if cut {
		st.Truncated += 2
		st.TruncatedPairs++
	}
	if exs[0].Trained() == 0 || exs[1].Trained() == 0 {
		// Cut before one of the answers began: nothing to compare.
		st.Untrained += 2
		return
	}
	if slices.Equal(exs[0].Tokens, exs[1].Tokens) {
		st.IdenticalPairs++
	}
	st.Pairs++
	for _, ex := range exs {
		st.Examples++
		st.Tokens += int64(len(ex.Tokens))
		st.Trained += int64(ex.Trained())
	}
	item.Examples = exs
}

// bound recognises a record longer than the window before it is
// rendered and tokenized whole, so that memory stays bounded whatever the
// length of a line: no token spells more than Renderer.MaxPieceBytes bytes,
// so text of more bytes than (MaxLength+1) times that is more than
// MaxLength tokens. Such a record is dropped (long) under Drop; under
// Truncate its texts are cut to that many bytes (and a margin), past the
// MaxLength tokens kept.
func (s *scanner) bound(rec *Record) (long bool) {
	if s.cfg.MaxLength <= 0 {
		return false
	}
	n := len(rec.Text)
	for _, m := range rec.Messages {
		n += len(m.Content)
	}
	rn := 0
	for _, m := range rec.Rejected {
		rn += len(m.Content)
	}
	n = max(n, rn)                 // the longer side of a pair
	if n <= s.cfg.MaxLength+4096 { // within the limit below whatever MaxPieceBytes (at least 1)
		return false
	}
	limit := (s.cfg.MaxLength+1)*s.r.MaxPieceBytes() + 4096
	if n <= limit {
		return false
	}
	if s.cfg.Overflow == Drop {
		return true
	}
	rec.Text = cutUTF8(rec.Text, limit)
	if rec.Messages != nil {
		msgs := slices.Clone(rec.Messages)
		for i := range msgs {
			msgs[i].Content = cutUTF8(msgs[i].Content, limit)
		}
		rec.Messages = msgs
	}
	if rec.Rejected != nil {
		msgs := slices.Clone(rec.Rejected)
		for i := range msgs {
			msgs[i].Content = cutUTF8(msgs[i].Content, limit)
		}
		rec.Rejected = msgs
	}
	return false
}

// cutUTF8 cuts s to at most n bytes, on a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.Clone(s[:n])
}

// heldOut says whether a record's prompt falls in the eval ratio.
func (s *scanner) heldOut(rec Record) bool {
	h := promptHash(rec, s.cfg.Seed)
	return float64(h>>11)/(1<<53) < s.cfg.EvalRatio
}

// recordHash identifies a record's content for duplicate removal.
func recordHash(rec Record) uint64 {
	h := fnv.New64a()
	writeMessages(h, rec.Messages)
	h.Write([]byte(rec.Text))
	if rec.Rejected != nil {
		h.Write([]byte("\x00rejected\x00"))
		writeMessages(h, rec.Rejected)
	}
	return h.Sum64()
}

// promptHash identifies what a record asks: its turns before the last one
// (its text, for plain text).
func promptHash(rec Record, seed uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	if rec.Rejected != nil {
		writeMessages(h, rec.Messages[:rec.PromptTurns])
	} else if len(rec.Messages) > 0 {
		writeMessages(h, rec.Messages[:len(rec.Messages)-1])
	} else {
		h.Write([]byte(rec.Text))
	}
	return h.Sum64()
}

func writeMessages(h io.Writer, msgs []Message) {
	for _, m := range msgs {
		mask := "\x00"
		if m.Mask {
			mask = "\x01"
		}
		io.WriteString(h, m.Role)
		io.WriteString(h, mask)
		io.WriteString(h, m.Content)
		io.WriteString(h, "\x00")
	}
}

// Lengths summarises example lengths in tokens.
type Lengths struct {
	Count   int      `json:"count"`
	Min     int      `json:"min"`
	Max     int      `json:"max"`
	Mean    float64  `json:"mean"`
	P50     int      `json:"p50"`
	P90     int      `json:"p90"`
	P99     int      `json:"p99"`
	Buckets []Bucket `json:"buckets"`
	counts  []int64  // counts[n]: examples of n tokens (n < maxExact)
	over    []int    // lengths of maxExact and more
	sum     int64
}

// Bucket counts the examples of Lo to Hi tokens (inclusive).
type Bucket struct {
	Lo    int `json:"lo"`
	Hi    int `json:"hi"`
	Count int `json:"count"`
}

// maxExact bounds the exact length counts (1 MiB of counters at most).
const maxExact = 1 << 17

func (l *Lengths) add(n int) {
	if l.Count == 0 || n < l.Min {
		l.Min = n
	}
	l.Max = max(l.Max, n)
	l.Count++
	l.sum += int64(n)
	if n >= maxExact {
		l.over = append(l.over, n)
		return
	}
	if n >= len(l.counts) {
		grown := min(max(n+1, 2*len(l.counts)), maxExact)
		l.counts = append(l.counts, make([]int64, grown-len(l.counts))...)
	}
	l.counts[n]++
}

// finish computes the summary: percentiles and up to 12 buckets of a round
// width.
func (l *Lengths) finish() {
	if l.Count == 0 {
		return
	}
	l.Mean = float64(l.sum) / float64(l.Count)
	sort.Ints(l.over)
	at := func(q float64) int {
		rank := int64(math.Ceil(q * float64(l.Count)))
		var c int64
		for n, k := range l.counts {
			if c += k; c >= rank {
				return n
			}
		}
		return l.over[min(int(rank-c)-1, len(l.over)-1)]
	}
	l.P50, l.P90, l.P99 = at(0.5), at(0.9), at(0.99)
	width := 1
widths:
	for m := 1; ; m *= 10 {
		for _, f := range []int{1, 2, 5} {
			if width = f * m; (l.Max-l.Min)/width < 12 {
				break widths
			}
		}
	}
	lo := l.Min / width * width
	for b := lo; b <= l.Max; b += width {
		l.Buckets = append(l.Buckets, Bucket{Lo: b, Hi: b + width - 1})
	}
	for n, k := range l.counts {
		if k > 0 {
			l.Buckets[(n-lo)/width].Count += int(k)
		}
	}
	for _, n := range l.over {
		l.Buckets[(n-lo)/width].Count++
	}
}

// WriteSkipped writes the skipped bad rows as JSON Lines
// ({"source", "field", "error"}), for the run folder.
func (r *Report) WriteSkipped(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, e := range r.Skipped {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}
