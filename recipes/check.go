package recipes

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/types/model"
)

// The projections LoRA can adapt (lora.Targets; repeated here so recipes
// stays free of the engine).
var loraTargets = []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}

// allTargets adds the model-wide targets (lora.ModelTargets), never a
// default: the output head and the token embedding.
var allTargets = append(slices.Clone(loraTargets), "output", "token_embd")

var (
	dataFormats = []string{"", "messages", "sharegpt", "alpaca", "prompt-completion", "text", "fields", "preference"}
	schedules   = []string{"constant", "linear", "cosine"}
	kinds       = []string{"local", "ollama", "openai"}
	metricNames = []string{"exact_match", "contains", "regex", "token_f1", "rouge_l", "label_accuracy", "json_valid", "judge", "preference"}
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// defaults fills every setting the recipe leaves out.
func (r *Recipe) defaults() {
	r.defaultsDistill()
	d := &r.Data
	if d.Eval == "" && d.EvalRatio == 0 {
		d.EvalRatio = 0.1
	}
	if d.SeqLen == 0 && !r.given["data.seq_len"] {
		d.SeqLen = 512
	}
	if d.Packing == nil {
		t := true
		d.Packing = &t
	}
	if d.Overflow == "" {
		d.Overflow = "drop"
	}
	if d.Dedupe == "" {
		d.Dedupe = "exact"
		if d.KeepDuplicates {
			d.Dedupe = "none"
		}
	}
	if d.NearDuplicate == nil {
		v := 0.8
		d.NearDuplicate = &v
	}
	l := &r.LoRA
	if len(l.Targets) == 0 {
		l.Targets = slices.Clone(loraTargets)
	}
	if l.Rank == 0 && !r.given["lora.rank"] {
		l.Rank = 8
	}
	if l.Alpha == 0 && !r.given["lora.alpha"] {
		l.Alpha = 2 * float64(l.Rank)
	}
	t := &r.Train
	if t.MaxSteps == 0 && t.Epochs == 0 && !r.given["train.epochs"] {
		t.Epochs = 1
	}
	if t.BatchSize == 0 && t.BatchTokens == 0 && !r.given["train.batch_size"] {
		t.BatchSize = 1
	}
	if t.BatchTokens > 0 && t.BatchSize == 0 {
		t.BatchSize = batchFor(t.BatchTokens, d.SeqLen)
	}
	if t.LearningRate == 0 && !r.given["train.learning_rate"] {
		t.LearningRate = 2e-4
	}
	if t.Schedule == "" {
		t.Schedule = "cosine"
	}
	if t.ClipNorm == 0 {
		t.ClipNorm = 1
		if r.given["train.clip_norm"] {
			t.ClipNorm = -1 // clip_norm: 0 turns clipping off
		}
	}
	if t.Seed == 0 {
		t.Seed = 42
	}
	if d.Seed == 0 {
		d.Seed = t.Seed
	}
	if t.CheckpointEvery == 0 && !r.given["train.checkpoint_every"] {
		t.CheckpointEvery = 50
	}
	if t.EvalEvery == 0 && !r.given["train.eval_every"] {
		t.EvalEvery = 25
	}
	if t.ValWindows == 0 && !r.given["train.val_windows"] {
		t.ValWindows = DefaultValWindows
	}
	if t.Method == "" {
		t.Method = "sft"
	}
	if t.Method == "dpo" && t.Beta == 0 && !r.given["train.beta"] {
		t.Beta = 0.1
	}
	e := &r.Eval
	if len(e.Contestants) == 0 {
		e.Contestants = []Contestant{{Name: "base", Kind: "local"}, {Name: "tuned", Kind: "local", Adapter: "tuned"}}
	}
	for i := range e.Contestants {
		c := &e.Contestants[i]
		if c.Kind == "" {
			c.Kind = "local"
		}
		if c.Adapter != "" && c.Scale == 0 {
			c.Scale = 1
		}
		if c.Concurrency == 0 {
			c.Concurrency = 1
			if c.Kind != "local" {
				c.Concurrency = 4
			}
		}
		if c.Kind != "local" {
			if c.Timeout == 0 {
				c.Timeout = DefaultTimeout
			}
			if c.Attempts == 0 {
				c.Attempts = DefaultAttempts
			}
		}
	}
	if len(e.Metrics) == 0 {
		e.Metrics = []Metric{{Name: "rouge_l"}, {Name: "token_f1"}}
	}
	if e.Generation.MaxTokens == 0 {
		e.Generation.MaxTokens = 256
	}
	if e.Generation.Temperature == nil {
		z := 0.0
		e.Generation.Temperature = &z
	}
	if e.Generation.Seed == nil {
		s := int64(42)
		e.Generation.Seed = &s
	}
}

// batchFor is the batch size batch_tokens gives: windows of seqLen tokens.
func batchFor(batchTokens, seqLen int) int {
	if seqLen <= 0 {
		return 1
	}
	return max(1, (batchTokens+seqLen-1)/seqLen)
}

// clipped quotes a value for an error message, its start only when it is
// long (a value can be megabytes).
func clipped(v string) string {
	if len(v) <= maxEcho {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q (%d bytes)", strings.ToValidUTF8(v[:maxEcho], "")+"…", len(v))
}

// maxEcho is how much of a value an error message quotes.
const maxEcho = 64

func oneOf(v string, options []string) bool { return slices.Contains(options, v) }

func quoteList(xs []string) string {
	var q []string
	for _, x := range xs {
		if x != "" {
			q = append(q, x)
		}
	}
	return strings.Join(q, ", ")
}

// check reports the first invalid value, with its line.
func (r *Recipe) check() error {
	switch {
	case r.Name == "":
		return r.errAt("name", "missing: name the recipe (runs go to runs/<name>/)")
	case !nameRE.MatchString(r.Name):
		return r.errAt("name", "%s: use letters, digits, '.', '_' and '-' (it names a folder)", clipped(r.Name))
	case r.Base == "":
		return r.errAt("base", "missing: a GGUF file, ollama:NAME[:TAG], builtin:NAME or catalog:NAME")
	case r.Data.Train == "" && !r.Distills():
		return r.errAt("data.train", "missing: the training data file, folder or glob (or a distill section whose teacher writes it)")
	}
	d := r.Data
	switch {
	case !oneOf(d.Format, dataFormats):
		return r.errAt("data.format", "unknown format %q (use one of %s, or leave it out to detect)", d.Format, quoteList(dataFormats))
	case d.Eval != "" && d.EvalRatio != 0:
		// eval_ratio: 0 beside an eval file is what a resolved recipe
		// (a run's recipe.yaml) holds: no conflict.
		return r.errAt("data.eval_ratio", "give a separate eval file (data.eval) or an eval ratio, not both")
	case d.EvalRatio < 0 || d.EvalRatio >= 1:
		return r.errAt("data.eval_ratio", "%g is not within [0, 1)", d.EvalRatio)
	case d.SeqLen < 16:
		return r.errAt("data.seq_len", "%d is too short: at least 16 tokens", d.SeqLen)
	case d.Overflow != "drop" && d.Overflow != "truncate":
		return r.errAt("data.overflow", "%q: use drop or truncate", d.Overflow)
	case d.MaxBadRows < 0:
		return r.errAt("data.max_bad_rows", "must not be negative")
	case d.Dedupe != "exact" && d.Dedupe != "near" && d.Dedupe != "none":
		return r.errAt("data.dedupe", "%q: use exact, near or none", d.Dedupe)
	case d.KeepDuplicates && d.Dedupe != "none":
		return r.errAt("data.keep_duplicates", "keeps exact duplicates, which dedupe %q removes: give one of them (dedupe: none keeps them)", d.Dedupe)
	case *d.NearDuplicate < 0 || *d.NearDuplicate > 1:
		return r.errAt("data.near_duplicate", "%g is not within [0, 1] (the share of words two prompts share; 0: no check)", *d.NearDuplicate)
	case d.Dedupe == "near" && *d.NearDuplicate == 0:
		return r.errAt("data.dedupe", "near needs a near_duplicate similarity above 0")
	}
	l := r.LoRA
	for i, t := range l.Targets {
		if !oneOf(t, allTargets) {
			msg := fmt.Sprintf("unknown target %q", t)
			if s := suggest(t, allTargets); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (choose among " + strings.Join(allTargets, ", ") + ")"
			}
			return r.errAt(fmt.Sprintf("lora.targets[%d]", i), "%s", msg)
		}
		if slices.Index(l.Targets, t) != i {
			return r.errAt(fmt.Sprintf("lora.targets[%d]", i), "%q listed twice", t)
		}
	}
	switch {
	case l.Rank < 1:
		return r.errAt("lora.rank", "%d: the rank must be at least 1", l.Rank)
	case l.Alpha <= 0:
		return r.errAt("lora.alpha", "%g: alpha must be positive", l.Alpha)
	case l.Dropout < 0 || l.Dropout >= 1:
		return r.errAt("lora.dropout", "%g is not within [0, 1)", l.Dropout)
	}
	t := r.Train
	switch {
	case t.Epochs < 0:
		return r.errAt("train.epochs", "must not be negative")
	case t.Epochs == 0 && t.MaxSteps == 0:
		return r.errAt("train.epochs", "0 epochs and no max_steps: the run would not train")
	case t.MaxSteps < 0:
		return r.errAt("train.max_steps", "must not be negative")
	case t.BatchSize < 1:
		return r.errAt("train.batch_size", "%d: at least 1 window per step", t.BatchSize)
	case t.BatchTokens < 0:
		return r.errAt("train.batch_tokens", "must not be negative")
	case t.BatchTokens > 0 && r.given["train.batch_size"] && t.BatchSize != batchFor(t.BatchTokens, d.SeqLen):
		// Both, when batch_size is the one batch_tokens gives, is what a
		// resolved recipe holds (batch_tokens: 0 is none).
		return r.errAt("train.batch_tokens", "give batch_size or batch_tokens, not both")
	case t.LearningRate <= 0:
		return r.errAt("train.learning_rate", "%g: the learning rate must be positive", t.LearningRate)
	case !oneOf(t.Schedule, schedules):
		return r.errAt("train.schedule", "%q: use constant, linear or cosine", t.Schedule)
	case t.WarmupSteps < 0:
		return r.errAt("train.warmup_steps", "must not be negative")
	case t.MaxSteps > 0 && t.WarmupSteps >= t.MaxSteps:
		return r.errAt("train.warmup_steps", "%d warmup steps for a run of %d steps: warmup must be shorter than the run", t.WarmupSteps, t.MaxSteps)
	case t.WeightDecay < 0:
		return r.errAt("train.weight_decay", "must not be negative")
	case t.ValWindows < 0:
		return r.errAt("train.val_windows", "%d: a number of windows, or all (every window)", t.ValWindows)
	case t.CheckpointEvery < 0 || t.EvalEvery < 0 || t.Patience < 0 || t.Threads < 0:
		return r.errAt("train", "checkpoint_every, eval_every, patience and threads must not be negative")
	case t.Checkpointing != "" && t.Checkpointing != "auto" && t.Checkpointing != "on" && t.Checkpointing != "off":
		return r.errAt("train.checkpointing", "%q: use auto, on or off", t.Checkpointing)
	case t.Precision != "" && t.Precision != "auto" && t.Precision != "f32" && t.Precision != "bf16":
		return r.errAt("train.precision", "%q: use auto, f32 or bf16", t.Precision)
	case t.Method != "sft" && t.Method != "dpo":
		return r.errAt("train.method", "%q: use sft (supervised) or dpo (preference pairs)", t.Method)
	case t.Method != "dpo" && (t.Beta != 0 || t.RPOAlpha != 0):
		key := "train.beta"
		if t.Beta == 0 {
			key = "train.rpo_alpha"
		}
		return r.errAt(key, "applies to train.method: dpo only (the method is %s)", t.Method)
	case t.Method == "dpo" && (t.Beta <= 0 || math.IsNaN(t.Beta)):
		return r.errAt("train.beta", "%g: DPO's beta must be positive (TRL's default: 0.1)", t.Beta)
	case t.RPOAlpha < 0 || math.IsNaN(t.RPOAlpha):
		return r.errAt("train.rpo_alpha", "%g: must not be negative (0: no SFT term)", t.RPOAlpha)
	}
	names := map[string]bool{}
	for i, c := range r.Eval.Contestants {
		p := fmt.Sprintf("eval.contestants[%d]", i)
		switch {
		case c.Name == "":
			return r.errAt(p+".name", "missing: name the contestant")
		case names[c.Name]:
			return r.errAt(p+".name", "%q is used twice", c.Name)
		case !oneOf(c.Kind, kinds):
			return r.errAt(p+".kind", "%q: use local, ollama or openai", c.Kind)
		case c.Kind != "local" && c.Model == "":
			return r.errAt(p+".model", "missing: the %s model to ask", c.Kind)
		case c.Kind == "openai" && c.BaseURL == "":
			return r.errAt(p+".base_url", "missing: the OpenAI-compatible endpoint")
		case c.Kind == "local" && c.Adapter == "" && c.Scale != 0:
			return r.errAt(p+".scale", "a scale needs an adapter")
		case c.Concurrency < 1:
			return r.errAt(p+".concurrency", "at least 1")
		case c.PriceIn < 0 || c.PriceOut < 0:
			return r.errAt(p, "prices must not be negative")
		case c.Kind == "local" && (c.Timeout != 0 || c.Attempts != 0 || c.Budget != 0):
			key := "timeout"
			if c.Attempts != 0 {
				key = "attempts"
			} else if c.Budget != 0 {
				key = "budget"
			}
			return r.errAt(p+"."+key, "a local contestant makes no requests: timeout, attempts and budget are for ollama and openai contestants")
		case c.Kind != "local" && c.Timeout < time.Second:
			return r.errAt(p+".timeout", "%s: at least 1s (like 30s or 2m)", c.Timeout)
		case c.Attempts < 0 || c.Kind != "local" && c.Attempts < 1:
			return r.errAt(p+".attempts", "%d: at least 1 (the first try)", c.Attempts)
		case c.Budget < 0:
			return r.errAt(p+".budget", "%s must not be negative (0s: no limit)", c.Budget)
		}
		if err := r.checkChoices(p, c); err != nil {
			return err
		}
		names[c.Name] = true
	}
	for i, m := range r.Eval.Metrics {
		p := fmt.Sprintf("eval.metrics[%d]", i)
		if !oneOf(m.Name, metricNames) {
			msg := fmt.Sprintf("unknown metric %q", m.Name)
			if s := suggest(m.Name, metricNames); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (use one of " + strings.Join(metricNames, ", ") + ")"
			}
			return r.errAt(p+".name", "%s", msg)
		}
		if m.Pattern != "" {
			if _, err := regexp.Compile(m.Pattern); err != nil {
				return r.errAt(p+".pattern", "not a valid regular expression: %v", err)
			}
		}
		if m.Name == "regex" && m.Pattern == "" {
			return r.errAt(p+".pattern", "missing: the regex metric needs a pattern")
		}
		if m.Name == "judge" && !names[m.Judge] {
			return r.errAt(p+".judge", "%q is not a contestant of this suite", m.Judge)
		}
	}
	if g := r.Eval.Generation; g.MaxTokens < 0 || *g.Temperature < 0 {
		return r.errAt("eval.generation", "max_tokens and temperature must not be negative")
	}
	if p := r.Publish; p.Ollama != "" && !model.ParseName(p.Ollama).IsValid() {
		return r.errAt("publish.ollama", "%q is not an Ollama model name (like support-bot, team/support-bot or support-bot:v2)", p.Ollama)
	}
	switch r.Publish.As {
	case "", "auto", "adapter", "merged":
	default:
		return r.errAt("publish.as", "%q is not a form to publish in: use adapter, merged or auto", r.Publish.As)
	}
	if h := r.Publish.Host; h != "" {
		if u, err := url.Parse(h); err != nil || (strings.Contains(h, "://") && u.Host == "") {
			return r.errAt("publish.host", "%q is not a URL (like http://127.0.0.1:11434)", h)
		}
	}
	if m := r.Track.MLflow; m != "" && m != "off" {
		u, err := url.Parse(m)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return r.errAt("track.mlflow", "%q is not the http:// or https:// address of an MLflow tracking server (or off)", m)
		case u.User != nil:
			return r.errAt("track.mlflow", "the address holds credentials: remove them and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment")
		}
	}
	if err := r.checkDistill(); err != nil {
		return err
	}
	return r.checkSweep()
}

var memRE = regexp.MustCompile(`^[0-9]+[KMGT]?$`)

// checkSweep checks the sweep section: known key paths with values, an
// executor finetune has, resources Slurm takes.
func (r *Recipe) checkSweep() error {
	s := r.Sweep
	for _, key := range slices.Sorted(maps.Keys(s.Grid)) {
		p := "sweep.grid." + key
		if err := CheckKey(key); err != nil {
			return r.errAt(p, "%v: a grid key is a key path as --set takes it (like lora.rank)", err)
		}
		if key == "name" || strings.HasPrefix(key, "sweep.") || key == "sweep" {
			return r.errAt(p, "%s cannot vary between trials", key)
		}
		if len(s.Grid[key]) == 0 {
			return r.errAt(p, "no values to try: give a list, like [4, 8]")
		}
	}
	switch {
	case s.Trials < 0:
		return r.errAt("sweep.trials", "must not be negative (0: every combination of the grid)")
	case s.Executor != "" && s.Executor != "local" && s.Executor != "slurm":
		return r.errAt("sweep.executor", "%q: use local or slurm", s.Executor)
	case s.MaxParallel < 0:
		return r.errAt("sweep.max_parallel", "must not be negative")
	case s.Slurm.CPUsPerTask < 0:
		return r.errAt("sweep.slurm.cpus_per_task", "must not be negative")
	case s.Slurm.GPUs < 0:
		return r.errAt("sweep.slurm.gpus", "must not be negative")
	case s.Slurm.GPUs > 0 && s.Slurm.Gres != "":
		return r.errAt("sweep.slurm.gres", "give gpus or gres, not both")
	case s.Slurm.Mem != "" && !memRE.MatchString(s.Slurm.Mem):
		return r.errAt("sweep.slurm.mem", "%q: write a size as sbatch --mem takes it, like 4G or 500M", s.Slurm.Mem)
	case s.Slurm.Time < 0:
		return r.errAt("sweep.slurm.time", "must not be negative")
	case s.Slurm.Time > 0 && s.Slurm.Time < time.Minute:
		return r.errAt("sweep.slurm.time", "%s: Slurm counts time limits in minutes: at least 1m", s.Slurm.Time)
	}
	for i, a := range s.Slurm.Sbatch {
		if !strings.HasPrefix(a, "-") {
			return r.errAt(fmt.Sprintf("sweep.slurm.sbatch[%d]", i), "%q is not an sbatch option (like --qos=long)", a)
		}
	}
	if s.Metric != "" {
		if _, _, err := r.SweepMetric(); err != nil {
			return r.errAt("sweep.metric", "%v", err)
		}
	}
	return nil
}

// SweepMetric is the contestant and score column sweep.metric names
// (default: the tuned contestant and the suite's first metric).
func (r *Recipe) SweepMetric() (contestant, column string, err error) {
	contestant = "tuned"
	for _, c := range r.Eval.Contestants {
		if c.Adapter == "tuned" {
			contestant = c.Name
			break
		}
	}
	column = r.Sweep.Metric
	if before, after, ok := strings.Cut(column, "."); ok {
		contestant, column = before, after
		if !slices.ContainsFunc(r.Eval.Contestants, func(c Contestant) bool { return c.Name == before }) {
			return "", "", fmt.Errorf("%q: no contestant %q in eval.contestants", r.Sweep.Metric, before)
		}
	}
	var known []string
	for _, m := range r.Eval.Metrics {
		switch m.Name {
		case "label_accuracy":
			known = append(known, "label_accuracy", "label_accuracy_macro_f1")
		case "judge":
			if m.Mode == "pairwise" {
				known = append(known, "judge_pairwise")
			} else {
				known = append(known, "judge_rubric")
			}
		default:
			known = append(known, m.Name)
		}
	}
	if column == "" {
		if len(known) == 0 {
			return "", "", fmt.Errorf("the eval suite has no metric to rank the trials by")
		}
		return contestant, known[0], nil
	}
	if !slices.Contains(known, column) {
		return "", "", fmt.Errorf("%q is not a score of this eval suite (its scores: %s)", column, strings.Join(known, ", "))
	}
	return contestant, column, nil
}

// checkChoices refuses choices an API contestant would be given (its own,
// or the suite's): constrained decoding needs llama.cpp's sampler, which
// only a local contestant runs; and an empty choice, which no answer can
// be.
func (r *Recipe) checkChoices(p string, c Contestant) error {
	key, choices := p+".generation.choices", c.Generation.Choices
	if len(choices) == 0 {
		key, choices = "eval.generation.choices", r.Eval.Generation.Choices
	}
	if len(choices) == 0 {
		return nil
	}
	if c.Kind != "local" {
		return r.errAt(key, "choices (constrained decoding) work for local contestants only, and %q is an %s contestant: give them in the local contestants' own generation", c.Name, c.Kind)
	}
	for _, ch := range choices {
		if ch == "" {
			return r.errAt(key, "an empty choice: no answer can be one")
		}
	}
	return nil
}
