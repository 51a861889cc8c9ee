package datasets

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"unicode"
)

// Near duplicates between the splits: a training record whose prompt has
// nearly the words of an eval prompt (the same words in another casing or
// order, one word of ten changed) leaks that eval case as surely as an
// exact copy, which the exact (hashed) check misses on templated data.
//
// A prompt is the set of its words, lowercased (letters and digits; every
// other character separates words): word shingles of one word, so that
// one changed word of n costs about 2/(n+1) of the similarity. Two prompts
// are near duplicates when the Jaccard similarity of their word sets is
// at least the threshold. Eval prompts are indexed by MinHash signatures
// (nearHashes hashes in nearBands bands, locality-sensitive hashing):
// a training prompt is compared exactly with the eval prompts it shares a
// band with only, so the check is linear in the records. At similarity
// 0.8 two prompts share a band with probability 1-(1-0.8^4)^16 > 0.9997.

const (
	nearHashes = 64
	nearRows   = 4
	nearBands  = nearHashes / nearRows
)

// maxNearCandidates bounds the eval prompts one training prompt is
// compared with (beyond those already known to leak): on heavily templated
// data whose eval prompts all share bands, the check stays linear, and the
// count of leaked eval prompts is then a lower bound.
const maxNearCandidates = 2048

// MaxNearExamples is how many near duplicates a Report lists.
const MaxNearExamples = 5

// NearLeak is a training record whose prompt nearly equals an eval prompt.
type NearLeak struct {
	Train      string  `json:"train"`
	Eval       string  `json:"eval"`
	Similarity float64 `json:"similarity"` // Jaccard similarity of their word sets
	TrainText  string  `json:"train_prompt"`
	EvalText   string  `json:"eval_prompt"`
}

// nearIndex holds the eval prompts' word sets and their MinHash bands.
type nearIndex struct {
	threshold float64
	words     [][]uint64 // sorted word hashes of each eval prompt
	source    []string
	text      []string
	hit       []bool // the eval prompt has a near duplicate in training
	stamp     []uint32
	query     uint32
	bands     map[uint64][]int32
}

func newNearIndex(threshold float64) *nearIndex {
	return &nearIndex{threshold: threshold, bands: map[uint64][]int32{}}
}

// promptText is what a record asks, as text: its turns before the last
// (its text, for plain text).
func promptText(rec Record) string {
	if len(rec.Messages) == 0 {
		return rec.Text
	}
	var b strings.Builder
	for i, m := range rec.Messages[:len(rec.Messages)-1] {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Content)
	}
	return b.String()
}

// wordSet is the sorted, distinct hashes of a text's lowercased words.
func wordSet(text string) []uint64 {
	var set []uint64
	seen := map[uint64]struct{}{}
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		h := fnv.New64a()
		h.Write([]byte(strings.ToLower(w)))
		k := h.Sum64()
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			set = append(set, k)
		}
	}
	slices.Sort(set)
	return set
}

// jaccard is |a∩b|/|a∪b| of two sorted sets.
func jaccard(a, b []uint64) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 1
	}
	i, j, both := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			both++
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return float64(both) / float64(len(a)+len(b)-both)
}

// mix is splitmix64's finaliser: the i-th MinHash function of a word is
// mix(word ^ seed_i).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// bandKeys are the LSH bucket keys of a word set: one per band, the hash
// of its band's MinHash values (and the band's number).
func bandKeys(set []uint64) [nearBands]uint64 {
	var sig [nearHashes]uint64
	for i := range sig {
		sig[i] = ^uint64(0)
	}
	for _, w := range set {
		for i := range sig {
			if v := mix(w ^ (uint64(i)+1)*0x9e3779b97f4a7c15); v < sig[i] {
				sig[i] = v
			}
		}
	}
	var keys [nearBands]uint64
	var b [8]byte
	for band := range keys {
		h := fnv.New64a()
		binary.LittleEndian.PutUint64(b[:], uint64(band))
		h.Write(b[:])
		for _, v := range sig[band*nearRows : (band+1)*nearRows] {
			binary.LittleEndian.PutUint64(b[:], v)
			h.Write(b[:])
		}
		keys[band] = h.Sum64()
	}
	return keys
}

// add indexes an eval prompt.
func (x *nearIndex) add(rec Record) {
	text := promptText(rec)
	set := wordSet(text)
	if len(set) == 0 {
		return
	}
	id := int32(len(x.words))
	x.words = append(x.words, set)
	x.source = append(x.source, rec.Source)
	x.text = append(x.text, clip(text))
	x.hit = append(x.hit, false)
	x.stamp = append(x.stamp, 0)
	for _, k := range bandKeys(set) {
		if l := x.bands[k]; len(l) == 0 || l[len(l)-1] != id {
			x.bands[k] = append(l, id)
		}
	}
}

// find returns the eval prompt most similar to a training record's prompt
// at the threshold or above (-1: none), and marks every eval prompt at the
// threshold or above as leaked.
func (x *nearIndex) find(rec Record) (best int, sim float64, text string) {
	if len(x.words) == 0 {
		return -1, 0, ""
	}
	text = promptText(rec)
	set := wordSet(text)
	if len(set) == 0 {
		return -1, 0, ""
	}
	best = -1
	x.query++
	looked := 0
	for _, k := range bandKeys(set) {
		for _, id := range x.bands[k] {
			if x.stamp[id] == x.query {
				continue
			}
			x.stamp[id] = x.query
			// An eval prompt already counted needs no second look once
			// this record has its match.
			if x.hit[id] && best >= 0 {
				continue
			}
			if looked++; looked > maxNearCandidates {
				return best, sim, text
			}
			s := jaccard(set, x.words[id])
			if s < x.threshold {
				continue
			}
			x.hit[id] = true
			if s > sim {
				best, sim = int(id), s
			}
		}
	}
	return best, sim, text
}

// hits counts the eval prompts with a near duplicate in training.
func (x *nearIndex) hits() int {
	n := 0
	for _, h := range x.hit {
		if h {
			n++
		}
	}
	return n
}

// LeakWarning says, in one line, how much of the eval split training also
// holds (exact and near duplicates of eval prompts); "" when none, or when
// they were all left out of training.
func (r *Report) LeakWarning() string {
	if r.LeaksDropped > 0 || r.Leaks+r.NearLeaks == 0 {
		return ""
	}
	var msg string
	if r.LeakedEval > 0 {
		msg = fmt.Sprintf("%d of %d eval prompts have an exact or near duplicate in training (%d training records, %d exact; word similarity %g or more)",
			r.LeakedEval, r.Eval.Records, r.NearLeaks+r.Leaks, r.Leaks, r.NearDuplicate)
		if len(r.NearLeakList) > 0 {
			msg += fmt.Sprintf(", e.g. %q ~ %q", r.NearLeakList[0].TrainText, r.NearLeakList[0].EvalText)
		}
	} else {
		msg = fmt.Sprintf("%d training records ask an eval prompt exactly", r.Leaks)
	}
	return "train/eval leakage: " + msg + ": eval scores on those cases measure recall of the training set; data.dedupe: near leaves them out of training"
}

// LeakNote says what data.dedupe near left out of training; "" when
// nothing.
func (r *Report) LeakNote() string {
	if r.LeaksDropped == 0 {
		return ""
	}
	return fmt.Sprintf("left out of training: %d records that repeat an eval prompt exactly or nearly (data.dedupe: near; %d of %d eval prompts had one)", r.LeaksDropped, r.LeakedEval, r.Eval.Records)
}
