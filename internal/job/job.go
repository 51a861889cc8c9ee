// Package job runs a recipe: it resolves the base model, reads the data
// through datasets, trains through lora and keeps everything of one run in
// one run folder. cmd/finetune wires flags and progress display to it.
package job

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// Run folder files.
const (
	RecipeFile     = "recipe.yaml"
	DataReportFile = "data-report.json"
	SkippedFile    = "skipped-rows.jsonl"
	LogFile        = "train.log"
	AdapterFile    = "adapter.gguf"
	MetricsFile    = "metrics.jsonl"
	CheckpointFile = "checkpoint.gguf"
	BaseFile       = "base.txt" // the resolved base model path
)

// Data is a recipe's data, tokenized and packed.
type Data struct {
	Report *datasets.Report
	Train  []lora.Window
	Val    []lora.Window
}

// LoadData reads, renders and packs the recipe's data with the base
// model's tokenizer and chat template.
func LoadData(r *recipes.Recipe, basePath string) (*Data, error) {
	m, err := llama.LoadModel(basePath, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var trainEx, valEx []datasets.Example
	d := &Data{}
	rep, err := datasets.Scan(DataConfig(r), m, func(it datasets.Item) error {
		if it.Split == datasets.TrainSplit {
			trainEx = append(trainEx, it.Examples...)
		} else {
			valEx = append(valEx, it.Examples...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.Report = rep
	if len(trainEx) == 0 {
		return nil, fmt.Errorf("%s: the training split holds no example (see the data report: every example dropped, or no records)", r.Resolve(r.Data.Train))
	}
	if len(valEx) == 0 {
		line := r.Line("data.eval_ratio")
		if r.Data.Eval != "" {
			line = r.Line("data.eval")
		}
		return nil, &recipes.Error{File: r.Path, Line: line, Path: "data", Msg: "the eval split holds 0 examples: give a separate eval file or a larger eval_ratio"}
	}
	d.Train = pack(trainEx, r)
	d.Val = pack(valEx, r)
	return d, nil
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
		RenderOptions: datasets.RenderOptions{Template: dd.Template, TrainOnInputs: dd.TrainOnInputs},
		MaxLength:     dd.SeqLen,
		Overflow:      datasets.Overflow(dd.Overflow),
		MaxBadRows:    dd.MaxBadRows,
	}
	if dd.Eval != "" {
		cfg.EvalRatio = 0
	}
	return cfg
}

func pack(exs []datasets.Example, r *recipes.Recipe) []lora.Window {
	var ws []datasets.Window
	if *r.Data.Packing {
		ws = datasets.Pack(exs, r.Data.SeqLen)
	} else {
		for _, ex := range exs {
			ws = append(ws, datasets.Pack([]datasets.Example{ex}, r.Data.SeqLen)...)
		}
	}
	out := make([]lora.Window, len(ws))
	for i, w := range ws {
		out[i] = lora.Window{Tokens: w.Tokens, Weights: w.Weights, Pos: w.Pos, Seq: w.Seq}
	}
	return out
}

// LoRAConfig maps the recipe's lora and train sections onto lora.Config.
func LoRAConfig(r *recipes.Recipe, outDir string) lora.Config {
	t := r.Train
	return lora.Config{
		Targets: r.LoRA.Targets, Rank: r.LoRA.Rank, Alpha: r.LoRA.Alpha, RSLoRA: r.LoRA.RSLoRA, Dropout: r.LoRA.Dropout,
		LearningRate: t.LearningRate, Schedule: t.Schedule, WarmupSteps: t.WarmupSteps, WeightDecay: t.WeightDecay,
		GradAccum: t.BatchSize, ClipNorm: t.ClipNorm, MaxSteps: t.MaxSteps, Epochs: t.Epochs,
		EvalEvery: t.EvalEvery, Patience: t.Patience, CheckpointEvery: t.CheckpointEvery, Seed: t.Seed, Threads: t.Threads,
		OutDir: outDir,
	}
}

// Options of a training run.
type Options struct {
	// Out is the run folder (default runs/<name>/<timestamp>).
	Out string
	// Resume continues the newest run folder of the recipe with a
	// checkpoint (or Out).
	Resume bool
	// Base resolution settings.
	Base basemodel.Options
	// Log receives progress lines; the run folder's train.log gets them
	// too.
	Progress func(lora.Metrics)
	// Log is called with notable events (one line each).
	Log func(msg string, kv ...any)
}

// Result of a training run.
type Result struct {
	Dir    string
	Base   string
	Data   *Data
	Train  *lora.Result
	Recipe *recipes.Recipe
}

// Train runs the recipe's training. Everything that can be checked is
// checked before the run folder is made: the base model, the data, and the
// memory the run needs.
func Train(ctx context.Context, r *recipes.Recipe, o Options) (*Result, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	base, err := basemodel.Resolve(ctx, r.Base, r.Dir, o.Base)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
	}
	logf("base model", "path", base)
	if err := lora.CheckBase(base); err != nil {
		return nil, err
	}
	dir := o.Out
	if o.Resume && dir == "" {
		if dir, err = NewestRun(r.Name); err != nil {
			return nil, err
		}
	}
	if o.Resume {
		if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err != nil {
			return nil, fmt.Errorf("%s: no checkpoint to resume from", dir)
		}
	}
	data, err := LoadData(r, base)
	if err != nil {
		return nil, err
	}
	rep := data.Report
	logf("data", "train_examples", rep.Train.Examples, "eval_examples", rep.Eval.Examples, "train_windows", len(data.Train), "val_windows", len(data.Val), "dropped", rep.Train.Dropped+rep.Eval.Dropped, "truncated", rep.Train.Truncated+rep.Eval.Truncated)
	need, err := lora.EstimateMemory(base, r.Data.SeqLen, r.LoRA.Rank, len(r.LoRA.Targets))
	if err != nil {
		return nil, err
	}
	if avail := availableMemory(); avail > 0 && need > avail {
		return nil, fmt.Errorf("%s: the run needs about %.1f GiB but the machine has %.1f GiB available: lower data.seq_len or use a smaller or quantized base", r.Path, gib(need), gib(avail))
	}
	logf("memory", "estimated", fmt.Sprintf("%.2f GiB", gib(need)))

	if dir == "" {
		dir = filepath.Join("runs", r.Name, time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := writeRunFiles(dir, r, base, data); err != nil {
		return nil, err
	}
	cfg := LoRAConfig(r, dir)
	cfg.Resume = o.Resume
	cfg.Meta = r
	res, err := lora.Train(ctx, base, cfg, lora.Data{Train: data.Train, Val: data.Val}, o.Progress)
	if err != nil {
		return nil, err
	}
	return &Result{Dir: dir, Base: base, Data: data, Train: res, Recipe: r}, nil
}

func writeRunFiles(dir string, r *recipes.Recipe, base string, d *Data) error {
	y, err := r.YAML()
	if err != nil {
		return err
	}
	from := r.Path
	if abs, err := filepath.Abs(r.Path); err == nil {
		from = abs
	}
	header := fmt.Sprintf("%s%s (defaults filled in).\n", resolvedFrom, from)
	if err := atomicfile.Write(filepath.Join(dir, RecipeFile), append([]byte(header), y...)); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, BaseFile), []byte(base+"\n")); err != nil {
		return err
	}
	rep, err := json.MarshalIndent(d.Report, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, DataReportFile), append(rep, '\n')); err != nil {
		return err
	}
	var sk strings.Builder
	if err := d.Report.WriteSkipped(&sk); err != nil {
		return err
	}
	if sk.Len() > 0 {
		return atomicfile.Write(filepath.Join(dir, SkippedFile), []byte(sk.String()))
	}
	return nil
}

// NewestRun is the newest run folder of a recipe that holds a checkpoint.
func NewestRun(name string) (string, error) {
	root := filepath.Join("runs", name)
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", fmt.Errorf("no run of %q to resume in %s", name, root)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(root, e.Name(), CheckpointFile)); err == nil {
				dirs = append(dirs, e.Name())
			}
		}
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("no run of %q in %s has a checkpoint to resume from", name, root)
	}
	sort.Strings(dirs)
	return filepath.Join(root, dirs[len(dirs)-1]), nil
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }

// availableMemory is MemAvailable from /proc/meminfo (0 when unknown).
func availableMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
