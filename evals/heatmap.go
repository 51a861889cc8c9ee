package evals

import (
	"fmt"
	"html/template"
	"slices"
)

// The confusion matrices of report.html are heat maps: one row per
// reference label, one column per answered label in the same order (so
// the diagonal is the right answers) and "(other)" last; a cell's colour is
// its share of the row, green on the diagonal, red off it, grey for
// "(other)". The labels are ordered so that those confused with each other
// sit together. With many labels the cells are small squares without
// numbers: their title says the count.

// heatLarge is the number of labels above which cells show no numbers.
const heatLarge = 20

type heatView struct {
	Metric, Contestant string
	Cols               []string
	Rows               []heatRow
	Large              bool
	Note               string // the sentence that replaces a matrix of nothing but "(other)"
	Other              string // what the "(other)" answers were
}

type heatRow struct {
	Label string
	Title string
	Cells []heatCell
}

type heatCell struct {
	Text  string // the count, when shown
	Class string // "d" on the diagonal, "o" for (other)
	Style template.CSS
	Title string
}

// heatOrder orders labels so that labels confused with each other sit
// together: average-linkage agglomerative clustering on the symmetric
// confusion counts (counts[i][j] + counts[j][i]), each merge joining the
// two clusters at the ends that are most confused with each other. Labels
// never confused keep their order. counts is indexed like labels (the
// columns after them, "(other)", are ignored).
func heatOrder(labels []string, counts [][]int) []int {
	n := len(labels)
	sim := func(i, j int) float64 {
		if i == j {
			return 0
		}
		return float64(counts[i][j] + counts[j][i])
	}
	clusters := make([][]int, n)
	for i := range clusters {
		clusters[i] = []int{i}
	}
	for len(clusters) > 1 {
		ba, bb, best := 0, 1, -1.0
		for a := 0; a < len(clusters); a++ {
			for b := a + 1; b < len(clusters); b++ {
				s := 0.0
				for _, i := range clusters[a] {
					for _, j := range clusters[b] {
						s += sim(i, j)
					}
				}
				s /= float64(len(clusters[a]) * len(clusters[b]))
				if s > best {
					ba, bb, best = a, b, s
				}
			}
		}
		if best <= 0 {
			break // nothing more is confused: the rest keep their order
		}
		A, B := clusters[ba], clusters[bb]
		// Of the four ways to join them, the one whose meeting ends are
		// most confused (ties: as they are).
		ra, rb := slices.Clone(A), slices.Clone(B)
		slices.Reverse(ra)
		slices.Reverse(rb)
		joined, top := append(slices.Clone(A), B...), sim(A[len(A)-1], B[0])
		for _, c := range [][2][]int{{A, rb}, {ra, B}, {ra, rb}} {
			if s := sim(c[0][len(c[0])-1], c[1][0]); s > top {
				joined, top = append(slices.Clone(c[0]), c[1]...), s
			}
		}
		clusters[ba] = joined
		clusters = slices.Delete(clusters, bb, bb+1)
	}
	var order []int
	for _, c := range clusters {
		order = append(order, c...)
	}
	return order
}

// heatSum adds up the confusion matrices of one metric over the
// contestants, so that every contestant's heat map has the same order.
func heatSum(r *Results, metric string) *Confusion {
	var sum *Confusion
	for _, c := range r.Contestants {
		cm := c.Confusion[metric]
		if cm == nil {
			continue
		}
		if sum == nil {
			sum = &Confusion{Labels: cm.Labels, Counts: make([][]int, len(cm.Counts))}
			for i := range sum.Counts {
				sum.Counts[i] = make([]int, len(cm.Counts[i]))
			}
		}
		if !slices.Equal(sum.Labels, cm.Labels) {
			continue
		}
		for i, row := range cm.Counts {
			for j, v := range row {
				sum.Counts[i][j] += v
			}
		}
	}
	return sum
}

// heatMap is the heat map of cm, its labels in order.
func heatMap(metric, contestant string, cm *Confusion, order []int) heatView {
	n := len(cm.Labels)
	v := heatView{Metric: metric, Contestant: contestant, Large: n > heatLarge, Other: otherText(cm)}
	if cm.Compact() == nil {
		v.Note = noLabelNote(cm)
		return v
	}
	for _, i := range order {
		v.Cols = append(v.Cols, cm.Labels[i])
	}
	v.Cols = append(v.Cols, "(other)")
	cols := append(slices.Clone(order), n) // the counts' columns, "(other)" last
	for _, i := range order {
		row := cm.Counts[i]
		total := 0
		for _, c := range row {
			total += c
		}
		hr := heatRow{Label: cm.Labels[i], Title: fmt.Sprintf("%s: %d cases, %d right", cm.Labels[i], total, row[i])}
		for _, j := range cols {
			c := heatCell{}
			count := row[j]
			share := 0.0
			if total > 0 {
				share = float64(count) / float64(total)
			}
			rgb := "179,38,30" // confused: red
			switch {
			case j == i:
				c.Class, rgb = "d", "19,115,51" // right: green
			case j == n:
				c.Class, rgb = "o", "90,90,90"
			}
			if count > 0 {
				// At least a faint tint: one case in a long row shows.
				c.Style = template.CSS(fmt.Sprintf("background:rgba(%s,%.2f)", rgb, 0.12+0.88*share))
				if share > 0.55 {
					c.Style += ";color:#fff"
				}
				if !v.Large {
					c.Text = fmt.Sprint(count)
				}
			}
			c.Title = fmt.Sprintf("reference %s, answer %s: %d of %d (%.0f%%)", cm.Labels[i], cmLabel(cm, j), count, total, 100*share)
			hr.Cells = append(hr.Cells, c)
		}
		v.Rows = append(v.Rows, hr)
	}
	return v
}

func cmLabel(cm *Confusion, j int) string {
	if j == len(cm.Labels) {
		return "(other)"
	}
	return cm.Labels[j]
}
