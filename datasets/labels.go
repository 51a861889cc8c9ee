package datasets

import (
	"slices"
	"sort"
)

// maxLabels bounds the distinct labels a LabelReport counts: a column of
// more distinct values is free text, not a label set.
const maxLabels = 10000

// LabelReport describes the labels of a data set with a label field: how
// many, how many examples each has, which occur on one side only, and the
// imbalance of the training side.
type LabelReport struct {
	Labels int            `json:"labels"` // distinct labels, both splits
	Train  map[string]int `json:"train"`  // records per label
	Eval   map[string]int `json:"eval,omitempty"`
	// Unlabelled are records without a label.
	Unlabelled int `json:"unlabelled,omitempty"`
	// TooMany: more than maxLabels distinct values; counting stopped.
	TooMany bool `json:"too_many,omitempty"`
	// Min, Median and Max are the training records of a label.
	Min    int `json:"min"`
	Median int `json:"median"`
	Max    int `json:"max"`
	// Smallest are the few labels with the fewest training records.
	Smallest []LabelCount `json:"smallest,omitempty"`
	// OnlyEval are labels of eval records that training never shows;
	// OnlyTrain the reverse (both sorted, each list at most 20 long;
	// the counts are complete).
	OnlyEval      []string `json:"only_eval,omitempty"`
	OnlyEvalN     int      `json:"only_eval_count"`
	OnlyTrain     []string `json:"only_train,omitempty"`
	OnlyTrainN    int      `json:"only_train_count"`
	Imbalance     float64  `json:"imbalance"` // Max / Min
	distinctTotal map[string]struct{}
}

// LabelCount is a label and its training records.
type LabelCount struct {
	Label   string `json:"label"`
	Records int    `json:"records"`
}

func (l *LabelReport) add(split Split, label string) {
	if label == "" {
		l.Unlabelled++
		return
	}
	if l.distinctTotal == nil {
		l.distinctTotal = map[string]struct{}{}
		l.Train, l.Eval = map[string]int{}, map[string]int{}
	}
	if _, ok := l.distinctTotal[label]; !ok {
		if len(l.distinctTotal) >= maxLabels {
			l.TooMany = true
			return
		}
		l.distinctTotal[label] = struct{}{}
	}
	if split == EvalSplit {
		l.Eval[label]++
	} else {
		l.Train[label]++
	}
}

// finish computes the summary; a report without any label is nil.
func (l *LabelReport) finish() *LabelReport {
	if len(l.distinctTotal) == 0 {
		return nil
	}
	l.Labels = len(l.distinctTotal)
	var counts []LabelCount
	for k, n := range l.Train {
		counts = append(counts, LabelCount{k, n})
	}
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].Records != counts[j].Records {
			return counts[i].Records < counts[j].Records
		}
		return counts[i].Label < counts[j].Label
	})
	if len(counts) > 0 {
		l.Min, l.Max, l.Median = counts[0].Records, counts[len(counts)-1].Records, counts[len(counts)/2].Records
		l.Imbalance = float64(l.Max) / float64(l.Min)
		l.Smallest = counts[:min(5, len(counts))]
	}
	for k := range l.Eval {
		if _, ok := l.Train[k]; !ok {
			l.OnlyEvalN++
			l.OnlyEval = append(l.OnlyEval, k)
		}
	}
	if len(l.Eval) > 0 {
		for k := range l.Train {
			if _, ok := l.Eval[k]; !ok {
				l.OnlyTrainN++
				l.OnlyTrain = append(l.OnlyTrain, k)
			}
		}
	}
	slices.Sort(l.OnlyEval)
	slices.Sort(l.OnlyTrain)
	l.OnlyEval, l.OnlyTrain = l.OnlyEval[:min(20, len(l.OnlyEval))], l.OnlyTrain[:min(20, len(l.OnlyTrain))]
	if len(l.Eval) == 0 {
		l.Eval = nil
	}
	return l
}
