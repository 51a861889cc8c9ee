// Command finetune fine-tunes Llama-family models with LoRA on the bundled
// llama.cpp/ggml engine and evaluates what the tuning bought.
//
//	finetune doctor                      what this build and machine can do
//	finetune inspect MODEL.gguf          a model's shape, types and vocabulary
//	finetune generate --model M --prompt P
//	finetune models fetch NAME           download a catalog model (base: catalog:NAME)
//	finetune testmodel --out M.gguf ...  write a random Llama model for tests
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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

func main() {
	log.SetOutput(os.Stderr)
	log.SetReportTimestamp(false)
	// The C libraries' lines, at debug level (-v shows them).
	ggml.SetLogger(slog.New(log.Default()))
	c, err := root.dispatch(os.Args[1:])
	report(c, err)
	os.Exit(exitCode(err))
}

// report says on stderr why the command c failed: a usage error as one
// line naming the command and where its help is, any other error as one
// log line.
func report(c *command, err error) {
	var ee *exitError
	if exitCode(err) == exitOK || errors.As(err, &ee) && ee.err == nil {
		return
	}
	switch {
	case exitCode(err) == exitUsage:
		hint := c.title() + " -h"
		if c == root || c.name == "help" {
			hint = "finetune help"
		}
		fmt.Fprintf(os.Stderr, "%s: %s; run '%s' for usage\n", c.title(), textfmt.OneLine(err.Error()), hint)
	case ee == nil && errors.Is(err, context.Canceled):
		log.Error("interrupted")
	default:
		log.Error(textfmt.OneLine(err.Error()))
	}
}

// verboseFlag adds -v, which shows debug logs, llama.cpp's and ggml's
// included.
func verboseFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("v", false, "verbose: show debug logs, including llama.cpp's and ggml's")
}

// parseArgs adds -v to fs, parses args (flags and positional arguments in
// any order) and turns debug logs on when -v is given; it returns the
// positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	setVerbose(*verbose)
	return pos, nil
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
	fs := newFlags("version")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	f, o, l := versions()
	fmt.Printf("finetune %s\nollama module %s\nllama.cpp/ggml %s\n", f, o, l)
	return nil
}
