package runs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// Data is a recipe's data as training gets it: rendered, split, tokenized
// and packed into windows.
type Data struct {
	Report *datasets.Report
	Train  []lora.Window
	Val    []lora.Window
	// TrainPairs and ValPairs are the preference pairs, each side alone
	// in a window of seq_len tokens (never packed).
	TrainPairs []lora.Preference
	ValPairs   []lora.Preference
}

// InitAdapter is the adapter file a run starts from, given train.init
// resolved: a run folder's adapter, or the file itself ("" for none).
func InitAdapter(init string) string {
	if init == "" {
		return ""
	}
	if st, err := os.Stat(init); err == nil && st.IsDir() {
		return filepath.Join(init, AdapterFile)
	}
	return init
}

// DataConfig maps the recipe's data section onto datasets.Config.
func DataConfig(r *recipes.Recipe) datasets.Config {
	dd := r.Data
	cfg := datasets.Config{
		Train:     r.Resolve(dd.Train),
		Eval:      r.Resolve(dd.Eval),
		EvalRatio: dd.EvalRatio,
		Seed:      dd.Seed,
		ReadOptions: datasets.ReadOptions{
			Format: datasets.Format(dd.Format),
			Fields: datasets.Fields{Prompt: dd.Fields.Prompt, Response: dd.Fields.Response, System: dd.Fields.System, Label: dd.Fields.Label},
			System: dd.System,
		},
		RenderOptions:  datasets.RenderOptions{Template: dd.Template, TrainOnInputs: dd.TrainOnInputs},
		MaxLength:      dd.SeqLen,
		Overflow:       datasets.Overflow(dd.Overflow),
		MaxBadRows:     dd.MaxBadRows,
		KeepDuplicates: dd.KeepDuplicates || dd.Dedupe == "none",
		DropLeaks:      dd.Dedupe == "near",
	}
	if dd.NearDuplicate != nil {
		cfg.NearDuplicate = *dd.NearDuplicate
	}
	if dd.Eval != "" {
		cfg.EvalRatio = 0
	}
	return cfg
}

// packing reports whether the recipe packs several examples per window.
func packing(r *recipes.Recipe) bool { return r.Data.Packing == nil || *r.Data.Packing }

// Windower turns a split's examples into training windows exactly as
// training does: packed (datasets.Packer) or one example per window.
type Windower struct {
	seqLen int
	packer *datasets.Packer // nil without packing
}

// NewWindower makes the windower of a recipe's data.
func NewWindower(r *recipes.Recipe) *Windower {
	w := &Windower{seqLen: r.Data.SeqLen}
	if packing(r) {
		w.packer = datasets.NewPacker(r.Data.SeqLen)
	}
	return w
}

// Add takes one example and returns the windows it finished.
func (w *Windower) Add(ex datasets.Example) []datasets.Window {
	if w.packer == nil {
		return datasets.Pack([]datasets.Example{ex}, w.seqLen)
	}
	return w.packer.Add(ex)
}

// Flush returns the windows still open.
func (w *Windower) Flush() []datasets.Window {
	if w.packer == nil {
		return nil
	}
	return w.packer.Flush()
}

// ScanData reads, renders, splits and tokenizes the recipe's data with the
// base model's tokenizer and chat template, and packs each split's
// examples into windows; see is called with every item (a record and its
// examples) before its examples are packed. It is the one path from data
// files to training windows: training and `finetune data inspect` take it.
func ScanData(r *recipes.Recipe, m *llama.Model, see func(datasets.Item)) (*Data, error) {
	d := &Data{}
	train, val := NewWindower(r), NewWindower(r)
	add := func(dst *[]lora.Window, ws []datasets.Window) {
		for _, w := range ws {
			*dst = append(*dst, loraWindow(w))
		}
	}
	rep, err := datasets.Scan(DataConfig(r), m, func(it datasets.Item) error {
		if see != nil {
			see(it)
		}
		if it.Record.Rejected != nil {
			if len(it.Examples) == 2 {
				pairs := &d.TrainPairs
				if it.Split != datasets.TrainSplit {
					pairs = &d.ValPairs
				}
				c, rj := datasets.Pack(it.Examples[:1], r.Data.SeqLen), datasets.Pack(it.Examples[1:], r.Data.SeqLen)
				*pairs = append(*pairs, lora.Preference{Chosen: loraWindow(c[0]), Rejected: loraWindow(rj[0])})
			}
			return nil
		}
		w, dst := train, &d.Train
		if it.Split != datasets.TrainSplit {
			w, dst = val, &d.Val
		}
		for _, ex := range it.Examples {
			add(dst, w.Add(ex))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	add(&d.Train, train.Flush())
	add(&d.Val, val.Flush())
	d.Report = rep
	return d, nil
}

func loraWindow(w datasets.Window) lora.Window {
	return lora.Window{Tokens: w.Tokens, Weights: w.Weights, Pos: w.Pos, Seq: w.Seq}
}

// LoadData is ScanData with the base model's vocabulary, checked for what
// training needs: examples in both splits.
func LoadData(r *recipes.Recipe, basePath string) (*Data, error) {
	m, err := llama.LoadModel(basePath, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	d, err := ScanData(r, m, nil)
	if err != nil {
		return nil, err
	}
	if r.Train.Method == lora.MethodDPO {
		return d, checkPairs(r, d)
	}
	if len(d.TrainPairs)+len(d.ValPairs) > 0 {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("train.method"), Path: "train.method",
			Msg: fmt.Sprintf("the data holds %d preference pairs, which supervised training does not read: set train.method: dpo, or give conversations", len(d.TrainPairs)+len(d.ValPairs))}
	}
	if len(d.Train) == 0 {
		return nil, fmt.Errorf("%s: the training split holds no example (see the data report: every example dropped, or no records)", r.Resolve(r.Data.Train))
	}
	if len(d.Val) == 0 {
		line := r.Line("data.eval_ratio")
		if r.Data.Eval != "" {
			line = r.Line("data.eval")
		}
		return nil, &recipes.Error{File: r.Path, Line: line, Path: "data", Msg: "the eval split holds 0 examples: give a separate eval file or a larger eval_ratio"}
	}
	return d, nil
}

// checkPairs checks a DPO run's data: pairs in both splits, nothing else.
func checkPairs(r *recipes.Recipe, d *Data) error {
	switch {
	case len(d.Train)+len(d.Val) > 0:
		return &recipes.Error{File: r.Path, Line: r.Line("train.method"), Path: "train.method",
			Msg: "train.method dpo reads preference pairs (prompt, chosen, rejected), but the data also holds conversations that are not: give every record as a pair, or train them with sft"}
	case len(d.TrainPairs) == 0:
		return fmt.Errorf("%s: the training split holds no preference pair (see the data report: every pair dropped, or no records)", r.Resolve(r.Data.Train))
	case len(d.ValPairs) == 0:
		line := r.Line("data.eval_ratio")
		if r.Data.Eval != "" {
			line = r.Line("data.eval")
		}
		return &recipes.Error{File: r.Path, Line: line, Path: "data", Msg: "the eval split holds 0 preference pairs: give a separate eval file or a larger eval_ratio"}
	}
	return nil
}
