package datasets

import (
	"fmt"
	"math/rand/v2"
)

// Window is one packed context window for the trainer.
type Window struct {
	Tokens  []int32   // len == context length (padded)
	Weights []float32 // loss weight per token (0 for padding and masked tokens)
	Pos     []int32   // position of each token within its own example (restarts at 0 per example)
	Seq     []int32   // example index within the window (for the block-diagonal mask); padding gets -1
	// Sources are the examples packed in the window, by Seq.
	Sources []string
	used    int
}

// Used is the number of tokens that are not padding.
func (w *Window) Used() int { return w.used }

// Padding fills the end of a window: token PadToken, weight 0, position 0,
// sequence -1.
const PadToken = 0

func newWindow(ctxLen int) *Window {
	w := &Window{
		Tokens:  make([]int32, ctxLen),
		Weights: make([]float32, ctxLen),
		Pos:     make([]int32, ctxLen),
		Seq:     make([]int32, ctxLen),
	}
	for i := range w.Seq {
		w.Seq[i] = -1
	}
	return w
}

func (w *Window) add(ex *Example) {
	seq := int32(len(w.Sources))
	copy(w.Tokens[w.used:], ex.Tokens)
	copy(w.Weights[w.used:], ex.Weights)
	w.Weights[w.used] = 0 // nothing before an example's first token predicts it
	for i := range ex.Tokens {
		w.Pos[w.used+i] = int32(i)
		w.Seq[w.used+i] = seq
	}
	w.used += len(ex.Tokens)
	w.Sources = append(w.Sources, ex.Source)
}

// OpenWindows is how many partly filled windows a Packer keeps: an example
// goes into the first that has room for it.
const OpenWindows = 8

// Packer packs a stream of examples into windows of ctxLen tokens. Each
// example is kept whole within one window; an example goes into the first
// of the open windows it fits in, and when none has room and OpenWindows
// are open, the fullest is finished. Memory is OpenWindows windows. The
// windows depend only on the examples and their order.
type Packer struct {
	ctxLen int
	open   []*Window
}

// NewPacker makes a packer for windows of ctxLen tokens.
func NewPacker(ctxLen int) *Packer {
	if ctxLen < 1 {
		panic(fmt.Sprintf("datasets: context length %d", ctxLen))
	}
	return &Packer{ctxLen: ctxLen}
}

// Add packs ex and returns the windows it finished (none or one). An
// example longer than the context length, or empty, is a programming error
// (Scan with MaxLength drops or truncates them) and panics.
func (p *Packer) Add(ex Example) []Window {
	n := len(ex.Tokens)
	if n == 0 || n > p.ctxLen || len(ex.Weights) != n {
		panic(fmt.Sprintf("datasets: cannot pack an example of %d tokens (%d weights) into windows of %d (%s)", n, len(ex.Weights), p.ctxLen, ex.Source))
	}
	for _, w := range p.open {
		if w.used+n <= p.ctxLen {
			w.add(&ex)
			return nil
		}
	}
	var done []Window
	if len(p.open) == OpenWindows {
		fullest := 0
		for i, w := range p.open {
			if w.used > p.open[fullest].used {
				fullest = i
			}
		}
		done = append(done, *p.open[fullest])
		p.open = append(p.open[:fullest], p.open[fullest+1:]...)
	}
	w := newWindow(p.ctxLen)
	w.add(&ex)
	p.open = append(p.open, w)
	return done
}

// Flush returns the windows still open, in the order they were opened.
func (p *Packer) Flush() []Window {
	out := make([]Window, len(p.open))
	for i, w := range p.open {
		out[i] = *w
	}
	p.open = nil
	return out
}

// Pack packs examples into windows of ctxLen tokens, in memory, with a
// Packer. For data that does not fit in memory, feed a Packer from Scan.
// Shuffle gives each epoch's order of the windows.
func Pack(examples []Example, ctxLen int) []Window {
	p := NewPacker(ctxLen)
	var out []Window
	for _, ex := range examples {
		out = append(out, p.Add(ex)...)
	}
	return append(out, p.Flush()...)
}

// Shuffle returns the order in which to visit n items (windows) in a given
// epoch: a permutation of 0..n-1 that depends only on seed and epoch.
func Shuffle(n int, seed uint64, epoch int) []int {
	rng := rand.New(rand.NewPCG(seed, uint64(epoch)^0x5bd1e9955bd1e995))
	return rng.Perm(n)
}
