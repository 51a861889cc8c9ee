package datasets

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// example makes an example of n tokens numbered from base, trained but for
// its first token.
func example(name string, base, n int) Example {
	ex := Example{Source: name}
	for i := 0; i < n; i++ {
		ex.Tokens = append(ex.Tokens, int32(base+i))
		ex.Weights = append(ex.Weights, 1)
	}
	ex.Weights[0] = 0
	return ex
}

func TestPackLayout(t *testing.T) {
	a, b, c := example("a", 10, 3), example("b", 20, 5), example("c", 30, 2)
	c.Weights[1] = 0 // a masked token stays masked
	ws := Pack([]Example{a, b, c}, 8)
	if len(ws) != 2 {
		t.Fatalf("%d windows, want 2", len(ws))
	}
	w := ws[0]
	want := Window{
		Tokens:  []int32{10, 11, 12, 20, 21, 22, 23, 24},
		Weights: []float32{0, 1, 1, 0, 1, 1, 1, 1},
		Pos:     []int32{0, 1, 2, 0, 1, 2, 3, 4},
		Seq:     []int32{0, 0, 0, 1, 1, 1, 1, 1},
		Sources: []string{"a", "b"},
		used:    8,
	}
	if !reflect.DeepEqual(w, want) {
		t.Fatalf("window 0\n%+v\nwant\n%+v", w, want)
	}
	w = ws[1]
	want = Window{
		Tokens:  []int32{30, 31, PadToken, PadToken, PadToken, PadToken, PadToken, PadToken},
		Weights: []float32{0, 0, 0, 0, 0, 0, 0, 0},
		Pos:     []int32{0, 1, 0, 0, 0, 0, 0, 0},
		Seq:     []int32{0, 0, -1, -1, -1, -1, -1, -1},
		Sources: []string{"c"},
		used:    2,
	}
	if !reflect.DeepEqual(w, want) || w.Used() != 2 {
		t.Fatalf("window 1\n%+v\nwant\n%+v", w, want)
	}
}

func TestPackFirstFit(t *testing.T) {
	// 6 and 6 do not share a window of 8; the 2 goes back into the first.
	ws := Pack([]Example{example("a", 0, 6), example("b", 0, 6), example("c", 0, 2), example("d", 0, 8)}, 8)
	var got [][]string
	for _, w := range ws {
		got = append(got, w.Sources)
	}
	if want := [][]string{{"a", "c"}, {"b"}, {"d"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("windows %v, want %v", got, want)
	}
}

// TestPackKeepsEveryExampleWhole packs many examples of mixed lengths and
// checks that each appears exactly once, whole and in one window, with at
// most OpenWindows windows partly filled at any time.
func TestPackKeepsEveryExampleWhole(t *testing.T) {
	const ctx = 64
	var exs []Example
	total := 0
	for i := 0; i < 500; i++ {
		n := 1 + (i*37)%ctx
		exs = append(exs, example(fmt.Sprint(i), i*1000, n))
		total += n
	}
	p := NewPacker(ctx)
	var ws []Window
	for _, ex := range exs {
		ws = append(ws, p.Add(ex)...)
		if len(p.open) > OpenWindows {
			t.Fatalf("%d windows open", len(p.open))
		}
	}
	ws = append(ws, p.Flush()...)
	if !reflect.DeepEqual(ws, Pack(exs, ctx)) {
		t.Fatal("Pack and a Packer disagree")
	}
	seen := map[string]bool{}
	used := 0
	for _, w := range ws {
		used += w.Used()
		if len(w.Tokens) != ctx || len(w.Weights) != ctx || len(w.Pos) != ctx || len(w.Seq) != ctx {
			t.Fatal("a window is not the context length")
		}
		for s, src := range w.Sources {
			if seen[src] {
				t.Fatalf("example %s packed twice", src)
			}
			seen[src] = true
			var i int
			fmt.Sscan(src, &i)
			ex := exs[i]
			start := slices.Index(w.Seq, int32(s))
			for j := range ex.Tokens {
				if w.Tokens[start+j] != ex.Tokens[j] || w.Pos[start+j] != int32(j) || w.Seq[start+j] != int32(s) || w.Weights[start+j] != ex.Weights[j] {
					t.Fatalf("example %s is not whole at %d in its window", src, start)
				}
			}
		}
	}
	if len(seen) != len(exs) || used != total {
		t.Fatalf("%d of %d examples, %d of %d tokens packed", len(seen), len(exs), used, total)
	}
	// First fit with 8 open windows packs these within 10% of perfect.
	if perfect := (total + ctx - 1) / ctx; float64(len(ws)) > 1.1*float64(perfect) {
		t.Fatalf("%d windows for %d tokens (%d at best)", len(ws), total, perfect)
	}
}

func TestPackRefusesTooLong(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("packing an example longer than the window did not panic")
		}
	}()
	Pack([]Example{example("long", 0, 9)}, 8)
}

func TestShuffle(t *testing.T) {
	a := Shuffle(100, 42, 0)
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	for i, v := range sorted {
		if v != i {
			t.Fatalf("not a permutation: %v", a)
		}
	}
	if !slices.Equal(a, Shuffle(100, 42, 0)) {
		t.Fatal("the same seed and epoch gave another order")
	}
	if slices.Equal(a, Shuffle(100, 42, 1)) || slices.Equal(a, Shuffle(100, 43, 0)) {
		t.Fatal("another epoch or seed gave the same order")
	}
}
