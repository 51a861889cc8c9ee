package runs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/sysmem"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// TrainOptions of Start and Resume.
type TrainOptions struct {
	// Out is the run folder to make (default Root/<name>/<timestamp>).
	Out string
	// Root holds the runs of every recipe (default "runs").
	Root string
	// Overrides are the --set values the recipe was loaded with; the run
	// records them.
	Overrides []string
	// Command says who holds the run's lock (default "finetune train").
	Command  string
	Base     basemodel.Options
	Logger   *slog.Logger
	Progress func(lora.Metrics)
	// AcceptChangedData lets Resume go on when the data files differ from
	// those the run started with (recorded in run.json).
	AcceptChangedData bool
	// TrackParent is the MLflow run (a sweep's) whose child the run's
	// MLflow run is, when the run makes one.
	TrackParent string
}

func (o *TrainOptions) defaults() {
	if o.Root == "" {
		o.Root = "runs"
	}
	if o.Command == "" {
		o.Command = "finetune train"
	}
}

// prepared is what a run needs before its folder is made: everything that
// can be checked is checked first (base, data, memory), so a bad recipe
// leaves no folder behind.
type prepared struct {
	base       BaseModel
	data       *Data
	dataRecord *DataRecord
	// added are the LoRA targets the run added to the recipe's defaults
	// (output, for a base that does not produce its stop token).
	added []string
}

func prepare(ctx context.Context, r *recipes.Recipe, o *TrainOptions, log *slog.Logger) (*prepared, error) {
	if r.Data.Train == "" && r.Distills() {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("distill"), Path: "data.train",
			Msg: "the recipe's training data is distilled: run `finetune distill " + r.Path + "`, which writes it and trains on it"}
	}
	path, err := basemodel.Resolve(ctx, r.Base, r.Dir, o.Base)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base", Msg: err.Error()}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	log.Info("base model", "path", path)
	if err := lora.CheckBase(path); err != nil {
		return nil, err
	}
	if init := InitAdapter(r.Resolve(r.Train.Init)); init != "" {
		if _, err := os.Stat(init); err != nil {
			return nil, &recipes.Error{File: r.Path, Line: r.Line("train.init"), Path: "train.init",
				Msg: fmt.Sprintf("%s: not found: name a run folder (for DPO after SFT, the SFT run's folder) or an adapter file", init)}
		}
	}
	data, err := LoadData(r, path)
	if err != nil {
		return nil, err
	}
	rep := data.Report
	if r.Train.Method == lora.MethodDPO {
		log.Info("data", "train_pairs", len(data.TrainPairs), "eval_pairs", len(data.ValPairs), "identical_pairs", rep.Train.IdenticalPairs+rep.Eval.IdenticalPairs,
			"dropped_pairs", rep.Train.DroppedPairs+rep.Eval.DroppedPairs, "truncated_pairs", rep.Train.TruncatedPairs+rep.Eval.TruncatedPairs)
	} else {
		log.Info("data", "train_examples", rep.Train.Examples, "eval_examples", rep.Eval.Examples, "train_windows", len(data.Train), "val_windows", len(data.Val),
			"dropped", rep.Train.Dropped+rep.Eval.Dropped, "truncated", rep.Train.Truncated+rep.Eval.Truncated)
	}
	warnLeaks(rep, log)
	for _, n := range rep.Notes {
		log.Info(n)
	}
	mem, err := lora.EstimateMemory(path, r.Data.SeqLen, lora.MemoryOptions{Rank: r.LoRA.Rank, Targets: r.LoRA.Targets, Dropout: r.LoRA.Dropout, Precision: r.Train.Precision})
	if err != nil {
		return nil, err
	}
	dev, err := ggml.PickDevice(r.Train.Device)
	if err != nil {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("train.device"), Path: "train.device", Msg: err.Error()}
	}
	avail := sysmem.Available()
	for _, d := range ggml.Devices() {
		if d.Name == dev && d.Type == ggml.DeviceGPU {
			avail = int64(d.MemoryFree)
		}
	}
	checkpoint, need := mem.Choose(r.Train.Checkpointing, avail)
	if avail > 0 && need > avail {
		hint := "lower data.seq_len or use a smaller or quantized base"
		if !checkpoint && mem.Checkpointed <= avail {
			hint = "set train.checkpointing: on (about " + fmt.Sprintf("%.1f GiB", gib(mem.Checkpointed)) + "), " + hint
		}
		return nil, fmt.Errorf("%s: the run needs about %.1f GiB but the machine has %.1f GiB available: %s", r.Path, gib(need), gib(avail), hint)
	}
	log.Info("memory", "estimated", fmt.Sprintf("%.2f GiB", gib(need)), "checkpointing", checkpoint)
	sum, _, err := filehash.SHA256(path)
	if err != nil {
		return nil, err
	}
	// A catalog model is found by its size; its hash, computed here
	// anyway, says it is the right file.
	if want := basemodel.CatalogSHA256(r.Base); want != "" && sum != want {
		return nil, &recipes.Error{File: r.Path, Line: r.Line("base"), Path: "base",
			Msg: fmt.Sprintf("%s: %s has sha256 %s, not the catalog's %s: replace it, or remove it and run \"finetune models fetch %s\"",
				r.Base, path, short(sum), short(want), strings.TrimPrefix(r.Base, "catalog:"))}
	}
	stopWindows := data.Train
	if r.Train.Method == lora.MethodDPO {
		for _, p := range data.TrainPairs {
			stopWindows = append(stopWindows, p.Chosen) // the answers DPO raises
		}
	}
	added := checkStop(ctx, r, path, stopWindows, log)
	dr, err := recordData(r)
	if err != nil {
		return nil, err
	}
	return &prepared{base: BaseModel{Ref: r.Base, Path: path, SHA256: sum}, data: data, dataRecord: dr, added: added}, nil
}

// warnLeaks warns, in the terminal and train.log, when training holds eval
// prompts (exact or near duplicates), and says what dedupe near left out.
func warnLeaks(rep *datasets.Report, log *slog.Logger) {
	if w := rep.LeakWarning(); w != "" {
		log.Warn(w, "exact", rep.Leaks, "near", rep.NearLeaks, "eval_prompts_leaked", rep.LeakedEval, "eval_prompts", rep.Eval.Records)
	} else if n := rep.LeakNote(); n != "" {
		log.Info(n)
	}
}

// Start trains a recipe into a new run folder. The folder is made only
// once the base, the data and the memory the run needs have been checked,
// and exclusively (never two runs in one folder). The returned run holds
// its lock until Close, also when training failed after the folder was
// made (then the error says how to resume).
func Start(ctx context.Context, r *recipes.Recipe, o TrainOptions) (*Run, *lora.Result, error) {
	began := time.Now()
	o.defaults()
	// Lines logged before the folder exists go to train.log once it does.
	var early recorder
	log := slog.New(&early)
	if o.Logger != nil {
		log = slog.New(slog.NewMultiHandler(o.Logger.Handler(), &early))
	}
	p, err := prepare(ctx, r, &o, log)
	if err != nil {
		return nil, nil, err
	}
	dir, err := create(o.Out, filepath.Join(o.Root, r.Name))
	if err != nil {
		return nil, nil, err
	}
	run := &Run{Dir: dir}
	if err := run.Lock(o.Command, o.Logger); err != nil {
		return nil, nil, err
	}
	if err := run.openLog(); err != nil {
		return run, nil, err
	}
	from := r.Path
	if abs, err := filepath.Abs(r.Path); err == nil {
		from = abs
	}
	now := time.Now().UTC()
	run.Record = Record{Recipe: from, Overrides: o.Overrides, Base: p.base, Data: p.dataRecord, AddedTargets: p.added, State: Created, Created: now, Updated: now}
	trained := absolutePaths(r, p.base.Path)
	run.Recipe = trained
	if err := run.writeStartFiles(p.data); err != nil {
		return run, nil, err
	}
	run.fileLog.Info("run", "dir", run.Dir, "recipe", from, "overrides", strings.Join(o.Overrides, " "), "command", o.Command)
	early.replay(ctx, run.fileLog.Handler())
	res, err := run.train(ctx, p.data, false, began, &o)
	return run, res, err
}

// absolutePaths is the recipe as a run keeps it: every path absolute, so
// the run folder means the same from any working directory.
func absolutePaths(r *recipes.Recipe, base string) *recipes.Recipe {
	c := *r
	c.Data.Train, c.Data.Eval = r.Resolve(r.Data.Train), r.Resolve(r.Data.Eval)
	c.Train.Init = r.Resolve(r.Train.Init)
	c.Distill.Prompts = r.Resolve(r.Distill.Prompts)
	if !strings.HasPrefix(r.Base, "ollama:") && !strings.HasPrefix(r.Base, "builtin:") && !strings.HasPrefix(r.Base, "catalog:") {
		c.Base = base
	}
	c.Eval.Contestants = append([]recipes.Contestant(nil), r.Eval.Contestants...)
	for i := range c.Eval.Contestants {
		ct := &c.Eval.Contestants[i]
		if ct.Kind == "local" {
			ct.Model = r.Resolve(ct.Model)
			if ct.Adapter != "tuned" && ct.Adapter != "init" {
				ct.Adapter = r.Resolve(ct.Adapter)
			}
		}
	}
	return &c
}

func (run *Run) writeStartFiles(d *Data) error {
	r := run.Recipe
	y, err := r.YAML()
	if err != nil {
		return err
	}
	header := fmt.Sprintf("# The recipe as trained, from %s (defaults filled in, paths absolute).\n", run.Record.Recipe)
	if err := atomicfile.Write(run.Path(RecipeFile), append([]byte(header), y...)); err != nil {
		return err
	}
	if err := run.writeRecord(); err != nil {
		return err
	}
	if err := run.writeDataReport(d); err != nil {
		return err
	}
	var sk strings.Builder
	if err := d.Report.WriteSkipped(&sk); err != nil {
		return err
	}
	if sk.Len() > 0 {
		return atomicfile.Write(run.Path(SkippedFile), []byte(sk.String()))
	}
	return nil
}

// recorder is a slog.Handler that keeps the records it is given.
type recorder struct{ records []slog.Record }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

func (h *recorder) replay(ctx context.Context, to slog.Handler) {
	for _, r := range h.records {
		to.Handle(ctx, r)
	}
}

// LoRAConfig maps the recipe's lora and train sections onto lora.Config,
// writing into the run folder dir.
func LoRAConfig(r *recipes.Recipe, dir string) lora.Config {
	t := r.Train
	return lora.Config{
		Targets: r.LoRA.Targets, Rank: r.LoRA.Rank, Alpha: r.LoRA.Alpha, RSLoRA: r.LoRA.RSLoRA, Dropout: r.LoRA.Dropout,
		LearningRate: t.LearningRate, Schedule: t.Schedule, WarmupSteps: t.WarmupSteps, WeightDecay: t.WeightDecay,
		GradAccum: t.BatchSize, ClipNorm: t.ClipNorm, MaxSteps: t.MaxSteps, Epochs: t.Epochs,
		EvalEvery: t.EvalEvery, ValWindows: int(t.ValWindows), Patience: t.Patience, CheckpointEvery: t.CheckpointEvery, Seed: t.Seed, Threads: t.Threads, Checkpointing: t.Checkpointing, Precision: t.Precision, Device: t.Device,
		Method: t.Method, Beta: t.Beta, RPOAlpha: t.RPOAlpha, Init: InitAdapter(r.Resolve(t.Init)),
		Files: lora.Files{
			Checkpoint: filepath.Join(dir, CheckpointFile),
			Metrics:    filepath.Join(dir, MetricsFile),
			Adapter:    filepath.Join(dir, AdapterFile),
		},
		Meta: r,
	}
}

// train runs lora.Train in the locked run folder and records the outcome;
// began is when this session's work began (its wall time starts there).
func (run *Run) train(ctx context.Context, d *Data, resume bool, began time.Time, o *TrainOptions) (*lora.Result, error) {
	cfg := LoRAConfig(run.Recipe, run.Dir)
	cfg.Resume = resume
	cfg.Started = began
	cfg.BaseSHA256 = run.Record.Base.SHA256
	cfg.AddedTargets = run.Record.AddedTargets
	if err := run.setState(Training, run.Record.Steps, nil); err != nil {
		return nil, err
	}
	log := run.Logger()
	cfg.Logger = log
	tr := run.openTracker(true, o.TrackParent)
	defer tr.Close()
	res, err := lora.Train(ctx, run.Base(), cfg, lora.Data{Train: d.Train, Val: d.Val, TrainPairs: d.TrainPairs, ValPairs: d.ValPairs}, func(m lora.Metrics) {
		kv := []any{"step", m.Step, "of", m.TotalSteps, "loss", fmt.Sprintf("%.4f", m.Loss)}
		if rw := m.Rewards; rw != nil {
			kv = append(kv, "margin", fmt.Sprintf("%.3f", rw.Margin), "accuracy", fmt.Sprintf("%.2f", rw.Accuracy))
		}
		if m.ValLoss != nil {
			kv = append(kv, "val_loss", fmt.Sprintf("%.4f", *m.ValLoss), "val_s", fmt.Sprintf("%.1f", m.ValSec))
		}
		if rw := m.ValRewards; rw != nil {
			kv = append(kv, "val_margin", fmt.Sprintf("%.3f", rw.Margin), "val_accuracy", fmt.Sprintf("%.2f", rw.Accuracy))
		}
		run.fileLog.Info("step", append(kv, "lr", fmt.Sprintf("%.3g", m.LR), "grad_norm", fmt.Sprintf("%.3f", m.GradNorm),
			"tokens_per_s", fmt.Sprintf("%.0f", m.TokensPerSec), "elapsed_s", fmt.Sprintf("%.0f", m.ElapsedSec))...)
		tr.Scalars(m.Step, stepScalars(m))
		if o.Progress != nil {
			o.Progress(m)
		}
	})
	if err != nil {
		tr.End("FAILED")
		steps := run.Record.Steps
		if err := run.setState(Failed, steps, err); err != nil {
			log.Warn("could not record the failure", "err", err)
		}
		var bad *lora.CheckpointError
		if errors.As(err, &bad) {
			// The checkpoint itself is what failed: resuming from it
			// again cannot work.
			return nil, fmt.Errorf("%w (the run cannot resume from this checkpoint: delete %s and `finetune train --resume %s` trains the run again from step 0, or start a new run with `finetune train %s`)",
				err, bad.Path, run.Dir, run.Path(RecipeFile))
		}
		if _, serr := os.Stat(run.Path(CheckpointFile)); serr == nil {
			return nil, fmt.Errorf("%w (the run keeps its last checkpoint: `finetune train --resume %s`)", err, run.Dir)
		}
		return nil, fmt.Errorf("%w (the run stopped before its first checkpoint: `finetune train --resume %s` trains it again from step 0)", err, run.Dir)
	}
	state := Finished
	if res.Interrupted {
		state = Interrupted
		tr.End("KILLED")
	} else {
		tr.Artifact(run.Path(AdapterInfoFile), AdapterInfoFile)
		tr.Artifact(run.Path(DataReportFile), DataReportFile)
		tr.End("FINISHED")
	}
	if err := run.setState(state, res.Steps, nil); err != nil {
		return res, err
	}
	kv := []any{"state", state, "steps", res.Steps, "tokens", res.TokensSeen, "train_loss", fmt.Sprintf("%.4f", res.TrainLoss)}
	if res.ValLoss != nil {
		kv = append(kv, "val_loss", fmt.Sprintf("%.4f", *res.ValLoss))
	}
	// The run's wall time, and the parts of it the steps and the
	// validation passes took (the rest: loading, checkpoints, setup).
	kv = append(kv, "wall", seconds(res.WallSeconds), "steps_time", seconds(res.StepsSeconds))
	if res.ValPasses > 0 {
		kv = append(kv, "validation_time", seconds(res.ValSeconds), "val_passes", res.ValPasses)
	}
	if res.StoppedEarly {
		kv = append(kv, "stopped_early_at_best_step", res.BestStep)
	}
	log.Info("trained", kv...)
	return res, nil
}

// ErrFinished is returned (wrapped) when resuming a finished run.
var ErrFinished = errors.New("the run is finished")

// Resume continues an unfinished run from its checkpoint, with the recipe
// and overrides it was started with and on the base it was trained on
// (checked by SHA-256). It takes the run's lock, which the run holds until
// Close.
func (run *Run) Resume(ctx context.Context, o TrainOptions) (*lora.Result, error) {
	began := time.Now()
	o.defaults()
	if run.Recipe == nil {
		return nil, fmt.Errorf("%s: no %s to resume with", run.Dir, RecipeFile)
	}
	if err := run.Lock(o.Command, o.Logger); err != nil {
		return nil, err
	}
	if err := run.openLog(); err != nil {
		return nil, err
	}
	if err := resumable(run); err != nil {
		return nil, err
	}
	if err := run.checkBase(ctx, o.Base); err != nil {
		return nil, err
	}
	log := run.Logger()
	step := run.Record.Steps
	_, cerr := os.Stat(run.Path(CheckpointFile))
	fromCheckpoint := cerr == nil
	if f, err := gguf.Open(run.Path(CheckpointFile)); err == nil {
		if n, ok := f.Uint("finetune.checkpoint.step"); ok {
			step = int(n) // the checkpoint is newer than run.json after a kill
		}
	}
	if !fromCheckpoint {
		// Stopped before its first checkpoint: nothing of its training is
		// kept, so it trains again from the start, in the same folder.
		step = 0
		run.Record.Steps = 0
		log.Info("the run has no checkpoint yet (it stopped before its first): training starts again from step 0")
	}
	changed, err := run.checkData(o.AcceptChangedData, step)
	if err != nil {
		return nil, err
	}
	log.Info("resuming", "dir", run.Dir, "from_step", step, "state", run.Record.State, "base", run.Base())
	d, err := LoadData(run.Recipe, run.Base())
	if err != nil {
		return nil, err
	}
	if changed {
		// The report describes the data the run goes on with.
		if err := run.writeDataReport(d); err != nil {
			return nil, err
		}
	}
	warnLeaks(d.Report, log)
	return run.train(ctx, d, fromCheckpoint, began, &o)
}

// resumable says why a run cannot be resumed.
func resumable(run *Run) error {
	if run.Record.State == Finished {
		if _, err := os.Stat(run.Adapter()); err != nil {
			return fmt.Errorf("%s: %w (%d steps) but its %s is gone: nothing to resume; restore the adapter, or train the run's recipe again with `finetune train %s`",
				run.Dir, ErrFinished, run.Record.Steps, AdapterFile, run.Path(RecipeFile))
		}
		return fmt.Errorf("%s: %w (%d steps, its adapter is %s): nothing to resume; start a new run with `finetune train %s`",
			run.Dir, ErrFinished, run.Record.Steps, run.Adapter(), run.Record.Recipe)
	}
	return nil
}

// checkBase checks that the base the run will load is the one it trained
// on: the recorded file, or for ollama:, builtin: and catalog: bases the
// file the reference resolves to now.
func (run *Run) checkBase(ctx context.Context, o basemodel.Options) error {
	b := run.Record.Base
	path := b.Path
	if _, err := os.Stat(path); err != nil && b.Ref != "" && b.Ref != b.Path {
		if p, rerr := basemodel.Resolve(ctx, b.Ref, filepath.Dir(run.Record.Recipe), o); rerr == nil {
			path = p
		}
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: the base model it trained on, %s, is gone: restore it to resume", run.Dir, b.Path)
	}
	if b.SHA256 == "" {
		return nil
	}
	sum, _, err := filehash.SHA256(path)
	if err != nil {
		return err
	}
	if sum != b.SHA256 {
		return fmt.Errorf("%s: the base model %s is not the one the run trained on (sha256:%s, now sha256:%s): restore that file, or start a new run",
			run.Dir, path, short(b.SHA256), short(sum))
	}
	run.Record.Base.Path = path
	return nil
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }

// seconds is a time in seconds as a duration for people: to the tenth of
// a second below a minute, else to the second.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
