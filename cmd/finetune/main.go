// Command finetune fine-tunes Llama-family models with LoRA on the bundled
// llama.cpp/ggml engine and evaluates what the tuning bought.
//
//	finetune doctor                      what this build and machine can do
//	finetune inspect MODEL.gguf          a model's shape, types and vocabulary
//	finetune generate --model M --prompt P
//	finetune testmodel --out M.gguf ...  write a random Llama model for tests
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// Set by the Makefile's -ldflags.
var (
	version     = ""
	llamaCommit = ""
	buildFlags  = ""
)

type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = []command{
	{"doctor", "show versions, CPU features, threads and GPU devices", runDoctor},
	{"inspect", "describe a GGUF model or adapter (--json for machines)", runInspect},
	{"generate", "generate text with a model, optionally with LoRA adapters", runGenerate},
	{"testmodel", "write a random-initialised Llama GGUF model for tests", runTestmodel},
	{"data", "inspect a data set as training will see it (data inspect FILE --model M)", runData},
	{"recipe", "validate a recipe, or show it resolved with defaults", runRecipe},
	{"train", "train a recipe's LoRA adapter into a run folder", runTrain},
	{"eval", "evaluate base, tuned and API models on the recipe's eval suite; write reports", runEval},
	{"export", "merge, peft, import-peft: fold an adapter into its base; convert to/from HF PEFT", runExport},
	{"publish", "create an Ollama model from base + tuned adapter, smoke-tested", runPublish},
	{"version", "print the version", runVersion},
}

// errUsage marks an error in how the command was called (exit code 2).
var errUsage = errors.New("usage")

func main() {
	log.SetOutput(os.Stderr)
	log.SetReportTimestamp(false)
	// The C libraries' lines, at debug level (-v shows them).
	ggml.SetLogger(slog.New(log.Default()))
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name == name {
			if err := c.run(os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return
				}
				if errors.Is(err, errUsage) {
					fmt.Fprintf(os.Stderr, "finetune %s: %v\nRun 'finetune %s -h' for usage.\n", name, strings.TrimPrefix(err.Error(), "usage: "), name)
					os.Exit(2)
				}
				log.Error(textfmt.OneLine(err.Error()))
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "finetune: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "finetune: LoRA fine-tuning and evaluation of Llama-family models on llama.cpp/ggml")
	fmt.Fprintln(w, "\nUsage: finetune COMMAND [arguments]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'finetune COMMAND -h' for a command's flags.")
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlags makes a flag set whose -h prints the command's usage line.
func newFlags(name, args, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: finetune %s %s\n\n%s\n\nFlags:\n", name, args, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("inspect M.gguf --json"), returning the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
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

// verboseFlag adds -v, which shows debug logs, llama.cpp's and ggml's
// included.
func verboseFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("v", false, "verbose: show debug logs, including llama.cpp's and ggml's")
}

func setVerbose(v bool) {
	if v {
		log.SetLevel(log.DebugLevel)
	}
}

var simdOnce sync.Once

// warnSIMD warns, once per run, when ggml was compiled without SIMD
// extensions this CPU offers.
func warnSIMD() {
	simdOnce.Do(func() {
		if missing := ggml.MissingSIMD(); len(missing) > 0 {
			log.Warn("this finetune was built without "+strings.Join(missing, ", ")+", which this CPU has: ggml runs many times slower",
				"fix", "rebuild with 'make build' (or set CGO_CFLAGS and CGO_CXXFLAGS to '"+simdFlags+"' for go build/install)")
		}
	})
}

const simdFlags = "-O3 -march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

// versions reports finetune's and its engine's versions.
func versions() (finetune, ollama, llamacpp string) {
	finetune, ollama = version, "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		if finetune == "" {
			finetune = info.Main.Version
		}
		for _, d := range info.Deps {
			if d.Path == "github.com/ollama/ollama" {
				ollama = d.Version
				if d.Replace != nil {
					ollama += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			}
		}
	}
	if finetune == "" || finetune == "(devel)" {
		finetune = "dev"
	}
	llamacpp = "bundled with ollama " + ollama
	if llamaCommit != "" {
		llamacpp = "commit " + llamaCommit + " (" + llamacpp + ")"
	}
	return finetune, ollama, llamacpp
}

func runVersion(args []string) error {
	fs := newFlags("version", "", "Print finetune's version and the versions of its engine.")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	f, o, l := versions()
	fmt.Printf("finetune %s\nollama module %s\nllama.cpp/ggml %s\n", f, o, l)
	return nil
}
