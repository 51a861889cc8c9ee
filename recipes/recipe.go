// Package recipes reads recipe files: YAML documents that name a base
// model, the data, the LoRA and training settings, the eval suite and the
// Ollama publishing settings of one fine-tuning job. A recipe is plain
// data: this package decodes it strictly (an unknown key is an error with
// its line and a suggestion), fills the documented defaults, applies
// --set overrides and checks every value, and knows nothing of models,
// training or HTTP.
package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Recipe is one fine-tuning job.
type Recipe struct {
	// Name names the job; runs go to runs/<name>/<timestamp>/.
	Name string `yaml:"name"`
	// Base is the base model: a GGUF file (relative to the recipe's
	// folder), "ollama:NAME[:TAG]" for a model pulled into a local Ollama,
	// "builtin:NAME" for a model finetune writes itself, or "catalog:NAME"
	// for a pretrained model of finetune's catalog (see
	// internal/basemodel).
	Base    string  `yaml:"base"`
	Data    Data    `yaml:"data"`
	LoRA    LoRA    `yaml:"lora"`
	Train   Train   `yaml:"train"`
	Eval    Eval    `yaml:"eval"`
	Publish Publish `yaml:"publish"`
	// Sweep is what `finetune sweep` tries; training one recipe ignores it.
	Sweep Sweep `yaml:"sweep,omitempty"`
	// Track says which experiment trackers see the run.
	Track Track `yaml:"track,omitempty"`
	// Distill makes the training data from a teacher's answers (`finetune
	// distill`); see distill.go.
	Distill Distill `yaml:"distill,omitempty"`

	// Path is the recipe file as given; Dir the absolute folder relative
	// paths start from.
	Path string `yaml:"-"`
	Dir  string `yaml:"-"`

	lines map[string]int  // line of every key path in the file
	given map[string]bool // key paths the file or a --set gave
}

// Data says where the data is and how it becomes tokens.
type Data struct {
	Train     string  `yaml:"train"`      // file, folder or glob (required)
	Eval      string  `yaml:"eval"`       // separate eval file, folder or glob
	EvalRatio float64 `yaml:"eval_ratio"` // else this share of the prompts is held out (default 0.1)
	Format    string  `yaml:"format"`     // messages, sharegpt, alpaca, prompt-completion, text, fields; "" detects
	Fields    Fields  `yaml:"fields"`     // column mapping for format "fields"
	System    string  `yaml:"system"`     // system prompt for conversations without one
	// Template is the chat template: "" (the model's own), a llama.cpp
	// built-in name (chatml, llama2, llama3, ...), or "none" (plain text).
	Template      string `yaml:"template"`
	SeqLen        int    `yaml:"seq_len"`  // context length of training windows (default 512)
	Packing       *bool  `yaml:"packing"`  // pack several examples per window (default true)
	Overflow      string `yaml:"overflow"` // drop (default) or truncate examples longer than seq_len
	TrainOnInputs bool   `yaml:"train_on_inputs"`
	MaxBadRows    int    `yaml:"max_bad_rows"` // skip and list up to this many bad rows (default 0: fail fast)
	// KeepDuplicates keeps exact duplicate records (default: removed).
	KeepDuplicates bool `yaml:"keep_duplicates"`
	// Dedupe: "exact" (default) removes exact duplicate records within a
	// split; "near" also leaves out of training the records whose prompt
	// is an eval prompt or a near duplicate of one; "none" keeps every
	// record (as keep_duplicates).
	Dedupe string `yaml:"dedupe"`
	// NearDuplicate is the similarity (Jaccard of lowercased word sets)
	// from which a training prompt counts as a near duplicate of an eval
	// prompt (default 0.8; 0 turns the check off).
	NearDuplicate *float64 `yaml:"near_duplicate"`
	Seed          uint64   `yaml:"seed"` // split and shuffle seed (default: train.seed)
}

// Fields maps columns to roles.
type Fields struct {
	Prompt   string `yaml:"prompt"`
	Response string `yaml:"response"`
	System   string `yaml:"system"`
	Label    string `yaml:"label"`
}

// LoRA holds the adapter settings.
type LoRA struct {
	Targets []string `yaml:"targets"` // default: all seven projections
	Rank    int      `yaml:"rank"`    // default 8
	Alpha   float64  `yaml:"alpha"`   // default 2 × rank
	RSLoRA  bool     `yaml:"rslora"`  // scale alpha/sqrt(rank) instead of alpha/rank
	Dropout float64  `yaml:"dropout"` // default 0
}

// Train holds the optimizer and loop settings.
type Train struct {
	Epochs          float64 `yaml:"epochs"`       // default 1 (when max_steps is 0)
	MaxSteps        int     `yaml:"max_steps"`    // optimizer steps; overrides epochs
	BatchSize       int     `yaml:"batch_size"`   // windows per optimizer step (default 1)
	BatchTokens     int     `yaml:"batch_tokens"` // or tokens per step: batch_size = batch_tokens / seq_len
	LearningRate    float64 `yaml:"learning_rate"`
	Schedule        string  `yaml:"schedule"` // constant, linear, cosine (default)
	WarmupSteps     int     `yaml:"warmup_steps"`
	WeightDecay     float64 `yaml:"weight_decay"`
	ClipNorm        float64 `yaml:"clip_norm"` // default 1; negative: off
	Seed            uint64  `yaml:"seed"`
	CheckpointEvery int     `yaml:"checkpoint_every"` // steps; default 50
	EvalEvery       int     `yaml:"eval_every"`       // validation loss every N steps; default 25
	// ValWindows is how many windows of the eval split a validation pass
	// reads: a random sample of that many, seeded by train.seed, the same
	// windows at every pass (so the losses compare); 0 or "all": every
	// window. Default 32 (DefaultValWindows).
	ValWindows Count `yaml:"val_windows"`
	Patience   int   `yaml:"patience"` // early stopping; default 0 (off)
	Threads    int   `yaml:"threads"`  // at most; default: every core free at each step
	// Checkpointing: "on" recomputes each layer's activations in the
	// backward pass instead of keeping them (far less memory, one more
	// forward pass); "off" keeps them; "auto" (default) turns it on when
	// keeping them would take more than a third of the memory available.
	Checkpointing string `yaml:"checkpointing"`
	// Precision of the CPU's matrix products with the frozen weights:
	// "f32", "bf16" (BF16 weight copies and inputs, F32 sums; on AMX
	// tiles where the CPU has them), or "auto" (default: bf16 for a
	// quantized base on a CPU with AMX, else f32).
	Precision string `yaml:"precision"`
	// Device is where training and the local contestants run: "auto"
	// (default: the first GPU ggml has a backend library for, else the
	// CPU), "cpu", "cuda", "cuda:N", or a device by ggml's name.
	Device string `yaml:"device"`
	// Method is the objective: sft (default) on conversations, or dpo on
	// preference pairs (data in the preference format), with Beta
	// (default 0.1) and RPOAlpha, the weight of RPO's cross-entropy term:
	// each chosen answer's mean cross-entropy per token, averaged over the
	// pairs (default 0: off).
	Method   string  `yaml:"method"`
	Beta     float64 `yaml:"beta"`
	RPOAlpha float64 `yaml:"rpo_alpha"`
	// Init is where the adapter starts: a run folder (its adapter) or an
	// adapter file; for dpo also the reference model. Default: a fresh
	// adapter (B zero), the base as reference.
	Init string `yaml:"init"`
}

// DefaultValWindows is train.val_windows when the recipe leaves it out:
// about 16k tokens a pass at 512-token windows, where a validation over
// every window of a large eval split would take minutes at every
// eval_every.
const DefaultValWindows = 32

// Count is a number of items to take where 0, written "all", is every
// item.
type Count int

// MarshalYAML writes 0 as "all".
func (c Count) MarshalYAML() (any, error) {
	if c == 0 {
		return "all", nil
	}
	return int(c), nil
}

// Eval is the eval suite run by `finetune eval`.
type Eval struct {
	// MaxCases caps the cases asked: a random sample of the eval split
	// seeded by data.seed, stratified by label when the cases carry labels
	// (or when a label_accuracy metric reads the label from the
	// reference). 0: every case of the eval split.
	MaxCases    int          `yaml:"max_cases"`
	Contestants []Contestant `yaml:"contestants"`
	Metrics     []Metric     `yaml:"metrics"`
	Generation  Generation   `yaml:"generation"`
}

// Contestant is one model answering the eval cases.
type Contestant struct {
	Name string `yaml:"name"`
	// Kind: local (the recipe's base, with adapter "tuned" for the run's
	// adapter or a file), ollama, openai.
	Kind        string     `yaml:"kind"`
	Model       string     `yaml:"model"`   // ollama/openai model; local: a GGUF other than the base
	Adapter     string     `yaml:"adapter"` // local: "tuned", "init" (train.init's adapter) or an adapter file
	Scale       float64    `yaml:"scale"`   // adapter scale (default 1)
	Host        string     `yaml:"host"`    // ollama host (default $OLLAMA_HOST or 127.0.0.1:11434)
	BaseURL     string     `yaml:"base_url"`
	APIKeyEnv   string     `yaml:"api_key_env"` // environment variable holding the key
	Concurrency int        `yaml:"concurrency"`
	PriceIn     float64    `yaml:"price_in"`  // per million prompt tokens
	PriceOut    float64    `yaml:"price_out"` // per million completion tokens
	Generation  Generation `yaml:"generation"`
	// How patient the eval is with an ollama or openai contestant:
	// Timeout is how long a request waits for the server to answer
	// (default 30s; the wait starts again whenever the server answers
	// another of the contestant's requests), Attempts how often a failed
	// request is sent in all (default 3; one that went unanswered twice is
	// not sent again), Budget the most time spent asking the contestant,
	// answers and judge verdicts together (default 0s: no limit).
	Timeout  time.Duration `yaml:"timeout"`
	Attempts int           `yaml:"attempts"`
	Budget   time.Duration `yaml:"budget"`
}

// The defaults of a contestant's timeout and attempts (evals' own).
const (
	DefaultTimeout  = 30 * time.Second
	DefaultAttempts = 3
)

// Generation settings; zero values inherit the suite's, then the defaults
// (temperature 0, 256 tokens, seed 42).
type Generation struct {
	Temperature *float64 `yaml:"temperature"`
	MaxTokens   int      `yaml:"max_tokens"`
	Stop        []string `yaml:"stop"`
	Seed        *int64   `yaml:"seed"`
	// Choices restrict a local contestant's answers to exactly one of
	// these strings (constrained decoding with llama.cpp's grammar
	// sampler); the single word "labels" stands for the eval cases' label
	// set (their labels, else their reference answers). The choice is the
	// whole answer: the metrics read it as they would any answer. Ollama
	// and OpenAI contestants refuse them.
	Choices []string `yaml:"choices,omitempty"`
}

// ChoicesLabels is the value of generation.choices that stands for the
// eval cases' label set.
const ChoicesLabels = "labels"

// Metric is one score computed for every case.
type Metric struct {
	Name string `yaml:"name"` // exact_match, contains, regex, token_f1, rouge_l, label_accuracy, json_valid, judge
	// Pattern is the regex of "regex" and the label extractor of
	// "label_accuracy" (first capture group); Field a JSON field to take
	// the label from.
	Pattern string `yaml:"pattern"`
	Field   string `yaml:"field"`
	// Normalize for exact_match/contains: lower, trim, punctuation,
	// whitespace (default: lower, trim, whitespace).
	Normalize []string `yaml:"normalize"`
	// Judge settings: the judging contestant, "rubric" (score 1-5 with
	// Rubric) or "pairwise" (against Reference).
	Judge     string `yaml:"judge"`
	Mode      string `yaml:"mode"`
	Rubric    string `yaml:"rubric"`
	Reference string `yaml:"reference"`
}

// Publish holds the Ollama settings for `finetune publish`.
type Publish struct {
	Ollama string `yaml:"ollama"` // model name to create
	Host   string `yaml:"host"`
	// As is the form to publish: adapter, merged or auto (the default:
	// what the server's version serves).
	As string `yaml:"as"`
}

// Track says where a run's figures go besides its folder (track).
type Track struct {
	// MLflow is an MLflow tracking server (http:// or https://; default
	// $MLFLOW_TRACKING_URI), "off" for none. Credentials come only from
	// the environment: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
	// and MLFLOW_TRACKING_PASSWORD.
	MLflow string `yaml:"mlflow,omitempty"`
	// Experiment is the MLflow experiment (default
	// $MLFLOW_EXPERIMENT_NAME, else the recipe's name).
	Experiment string `yaml:"experiment,omitempty"`
	// TensorBoard writes TensorBoard event files into the run folder
	// (default true).
	TensorBoard *bool `yaml:"tensorboard,omitempty"`
}

// Sweep says which values of a recipe `finetune sweep` tries, how it runs
// the trials and which one wins.
type Sweep struct {
	// Grid maps a key path (as --set takes it, e.g. lora.rank) to the
	// values to try; the trials are every combination.
	Grid map[string][]string `yaml:"grid,omitempty"`
	// Trials, when above 0, is a seeded random sample of that many
	// combinations of the grid instead of all of them.
	Trials int    `yaml:"trials,omitempty"`
	Seed   uint64 `yaml:"seed,omitempty"` // of the sample (default train.seed)
	// Metric ranks the trials, best first: a score column of the eval
	// report, of the tuned contestant ("rouge_l") or of another one
	// ("tuned.rouge_l"). Default: the suite's first metric. Higher wins.
	Metric string `yaml:"metric,omitempty"`
	// Executor runs the trials: local (default) or slurm.
	Executor string `yaml:"executor,omitempty"`
	// MaxParallel is how many trials run at once (default 1; local
	// divides the cores among them, slurm submits --array=…%K).
	MaxParallel int   `yaml:"max_parallel,omitempty"`
	Slurm       Slurm `yaml:"slurm,omitempty"`
}

// Slurm holds what every task of a sweep's array job asks of Slurm.
type Slurm struct {
	Partition   string        `yaml:"partition,omitempty"`     // sbatch --partition (default: the cluster's default)
	CPUsPerTask int           `yaml:"cpus_per_task,omitempty"` // --cpus-per-task (default train.threads, else 1); training uses that many threads
	Mem         string        `yaml:"mem,omitempty"`           // --mem, like 4G or 500M
	GPUs        int           `yaml:"gpus,omitempty"`          // --gres=gpu:N
	Gres        string        `yaml:"gres,omitempty"`          // --gres as written (gpu:a100:1), instead of gpus
	Time        time.Duration `yaml:"time,omitempty"`          // --time, the time limit of one trial
	// Sbatch are further sbatch options, each as one argument
	// ("--qos=long", "--account=ml").
	Sbatch []string `yaml:"sbatch,omitempty"`
}

// Load reads, decodes, defaults and checks a recipe; sets are "key.path=value"
// overrides applied before the checks.
func Load(path string, sets []string) (*Recipe, error) {
	src, err := readRecipe(path)
	if err != nil {
		return nil, err
	}
	return Decode(path, src, sets)
}

// Decode is Load of a recipe already read: path names it in errors and
// relative paths start at its folder.
func Decode(path string, src []byte, sets []string) (*Recipe, error) {
	r, err := Parse(path, src)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("--set %q: write key.path=value", s)
		}
		key = strings.TrimSpace(key)
		cleared, err := setPath(reflect.ValueOf(r).Elem(), key, val, path)
		if err != nil {
			return nil, err
		}
		// The value no longer comes from the file; a cleared one (and
		// what was under it) is not given at all, so its default applies.
		under := func(p string) bool {
			return p == key || cleared && (strings.HasPrefix(p, key+".") || strings.HasPrefix(p, key+"["))
		}
		maps.DeleteFunc(r.lines, func(p string, _ int) bool { return under(p) })
		maps.DeleteFunc(r.given, func(p string, _ bool) bool { return under(p) })
		if !cleared {
			r.given[key] = true
		}
	}
	r.defaults()
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// readRecipe reads a recipe file, looking at its first bytes before
// reading the rest: a model given where the recipe goes can be gigabytes.
func readRecipe(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such recipe file", path)
		}
		return nil, err
	}
	defer f.Close()
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	if err := notText(path, head[:n]); err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return append(head[:n], rest...), nil
}

// sniffLen is how much of a file notText looks at.
const sniffLen = 8 << 10

// notText says what a file is when its first bytes show it is not YAML
// text: a GGUF model (magic "GGUF"), or another binary file (a NUL byte).
func notText(path string, head []byte) error {
	head = head[:min(len(head), sniffLen)]
	switch {
	case bytes.HasPrefix(head, []byte("GGUF")):
		return fmt.Errorf("%s is a GGUF model file, not a recipe: name it as `base:` in a recipe (see recipes/customer-support.yaml)", path)
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return nil // UTF-16 text, which YAML reads
	case bytes.IndexByte(head, 0) >= 0:
		return fmt.Errorf("%s is a binary file, not a recipe: a recipe is a YAML text file (see recipes/customer-support.yaml)", path)
	}
	return nil
}

// notUTF8 names the line and column of the first byte of src that is not
// UTF-8 (YAML's own error names neither). UTF-16 text, which YAML reads,
// passes.
func notUTF8(path string, src []byte) error {
	if bytes.HasPrefix(src, []byte{0xFF, 0xFE}) || bytes.HasPrefix(src, []byte{0xFE, 0xFF}) || utf8.Valid(src) {
		return nil
	}
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n <= 1 {
			line := 1 + bytes.Count(src[:i], []byte("\n"))
			col := 1 + utf8.RuneCount(src[bytes.LastIndexByte(src[:i], '\n')+1:i])
			return &Error{File: path, Line: line, Msg: fmt.Sprintf("byte 0x%02X at column %d is not UTF-8: save the recipe as UTF-8 text (e.g. iconv -f latin1 -t utf-8)", src[i], col)}
		}
		i += n
	}
	return nil
}

// Parse decodes a recipe without defaults or checks. Path stays as given;
// Dir is the absolute folder of the recipe, so paths resolved from it do
// not depend on the working folder.
func Parse(path string, src []byte) (*Recipe, error) {
	if err := notText(path, src); err != nil {
		return nil, err
	}
	if err := notUTF8(path, src); err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Recipe{Path: path, Dir: dir}
	d := &decoder{file: path, lines: map[string]int{}}
	if len(doc.Content) == 0 {
		return nil, &Error{File: path, Msg: "the recipe is empty"}
	}
	if err := d.decode(&doc, reflect.ValueOf(r).Elem(), ""); err != nil {
		return nil, err
	}
	r.lines = d.lines
	r.given = map[string]bool{}
	for p := range d.lines {
		r.given[p] = true
	}
	return r, nil
}

// Given reports whether the recipe file or a --set gave a key path (as
// opposed to its default filling it in).
func (r *Recipe) Given(path string) bool { return r.given[path] }

// Line is the line of a key path in the recipe file (0 when it was not in
// the file).
func (r *Recipe) Line(path string) int { return r.lines[path] }

func (r *Recipe) errAt(path, format string, args ...any) error {
	line := r.lines[path]
	if line == 0 {
		// Point at the nearest section that is in the file.
		for p := path; line == 0 && strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			line = r.lines[p]
		}
	}
	return &Error{File: r.Path, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Resolve makes a path in the recipe absolute, relative to its folder.
func (r *Recipe) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.Dir, p)
}

// CheckKey says whether key is a key path of a recipe (what --set and a
// sweep's grid take): an error naming the unknown part, with a suggestion,
// when it is not.
func CheckKey(key string) error {
	t := reflect.TypeOf(Recipe{})
	parts := strings.Split(key, ".")
	for i, p := range parts {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			idx, names := fieldsOf(t)
			fi, ok := idx[p]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", p)
				if s := suggest(p, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += fmt.Sprintf(" (known keys here: %s)", strings.Join(names, ", "))
				}
				return fmt.Errorf("%s: %s", key, msg)
			}
			t = t.Field(fi).Type
		case reflect.Map:
			return nil // any key below a map
		default:
			return fmt.Errorf("%s: %q is not a section", key, strings.Join(parts[:i], "."))
		}
	}
	if t.Kind() == reflect.Struct && t != durationType {
		return fmt.Errorf("%s is a section, not a value: name one of its keys", key)
	}
	return nil
}

// YAML renders the resolved recipe (defaults filled) as YAML.
func (r *Recipe) YAML() ([]byte, error) { return yaml.Marshal(r) }
