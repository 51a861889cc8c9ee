package runs

import "github.com/finetune-dev/finetune/track"

// A run folder, runs/<recipe name>/<timestamp>/ unless --out names another.
// Every file a run holds is named here, with what writes it and what reads
// it. Paths inside these files are absolute.
const (
	// RunFile is the run's own record (Record): the recipe file and the
	// --set overrides it was started with, the base model (reference,
	// path, SHA-256) and the run's state. Written by Create and at every
	// change of state; read by Open (so by resume, eval, export, publish).
	RunFile = "run.json"
	// RecipeFile is the recipe as trained, defaults filled in and paths
	// made absolute. Written by Create; read by Open: a resumed run, its
	// eval and its publish use it, not the recipe file it came from.
	RecipeFile = "recipe.yaml"
	// LockFile is held (flock) by the process that trains, evaluates or
	// publishes into the folder, and says who that is. Written by Lock.
	LockFile = ".lock"
	// LogFile receives the run's log lines (key=value), from every
	// process that worked on the run. Written by the run's Logger.
	LogFile = "train.log"
	// DataReportFile is the data pipeline's report (datasets.Report):
	// records, examples, drops, truncation, lengths per split, exact
	// and near-duplicate leakage. Written by Train; read by eval, whose
	// report repeats the leakage warning.
	DataReportFile = "data-report.json"
	// SkippedFile lists the bad rows that were skipped (only when some
	// were). Written by Train.
	SkippedFile = "skipped-rows.jsonl"
	// CheckpointFile holds the LoRA tensors, AdamW's moments and the loop's
	// counters (lora). Written by lora.Train every train.checkpoint_every
	// steps and at the end; read when resuming.
	CheckpointFile = "checkpoint.gguf"
	// MetricsFile has one JSON line per optimizer step (lora.Metrics).
	// Written by lora.Train; read by eval for the report's loss curve.
	MetricsFile = "metrics.jsonl"
	// AdapterFile is the tuned adapter in llama.cpp's GGUF format, and
	// AdapterInfoFile (adapters.Info) says what it is and how it was made.
	// Written by lora.Train; read by eval, export and publish.
	AdapterFile     = "adapter.gguf"
	AdapterInfoFile = "adapter.json"
	// EvalDir holds the eval reports (results.json, report.md,
	// report.html) and the answer cache. Written by Eval.
	EvalDir = "eval"
	// ModelfileName is the Ollama Modelfile for the published model and
	// PublishFile the record of the last publish. Written by Publish.
	ModelfileName = "Modelfile"
	PublishFile   = "publish.json"
	// MergedFile is the merged model (the adapter folded into the base,
	// quantized to the base's type) that a publish as a merged model
	// uploaded, and the Modelfile's FROM. Written by Publish; read by
	// `ollama create NAME -f Modelfile`.
	MergedFile = "model.gguf"
	// TrackFile names the run's MLflow run (track.Record: the server's
	// address without credentials, the experiment and run ids), so that a
	// resume and an eval go on in the same MLflow run; TrackPendingFile
	// lists what the server did not take before the run's last tracker
	// closed (the next one, at resume or eval, sends it first). Written by
	// the run's tracker when the recipe's track.mlflow or
	// MLFLOW_TRACKING_URI names a server.
	TrackFile        = track.MLflowFile
	TrackPendingFile = track.PendingFile
	// EventFiles are TensorBoard's event files, one per training session
	// and per eval: every step's training scalars, the eval's scores and
	// its headline as text. Written by the run's tracker unless
	// track.tensorboard is false; read by `tensorboard --logdir runs`.
	EventFiles = "events.out.tfevents.*"
	// DistilledFile is the training data a teacher wrote (`finetune
	// distill`): OpenAI chat rows, each with its provenance under
	// "distill" (DistilledRow), and DistillReportFile (DistillReport) what
	// the teacher was asked, answered and cost and what the filters left
	// out. Written by Distill; DistilledFile is read by Train as the run's
	// data.train.
	DistilledFile     = "distilled.jsonl"
	DistillReportFile = "distill-report.json"
	// DistillCacheDir, beside a recipe's run folders (runs/<name>/), keeps
	// the teacher's answers and the judge's verdicts for every
	// distillation of the recipe. Written and read by Distill.
	DistillCacheDir = "distill-cache"
	// LegacyBaseFile named the base in run folders made before RunFile
	// existed; Open still reads it.
	LegacyBaseFile = "base.txt"
)
