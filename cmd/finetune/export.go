package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/job"
)

func runExport(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(os.Stderr, "Usage: finetune export merge RUN_DIR|ADAPTER.gguf --out M.gguf [--base B.gguf] [--type f16|q8_0|f32] [--scale S]\n\n  merge   fold the adapter into the base: a plain GGUF that llama.cpp and Ollama load\n")
		if len(args) == 0 {
			return usageErr("export takes a command: merge")
		}
		return flag.ErrHelp
	}
	if args[0] != "merge" {
		return usageErr("unknown export command %q (want merge)", args[0])
	}
	fs := newFlags("export merge", "RUN_DIR|ADAPTER.gguf --out M.gguf [flags]",
		"Fold a LoRA adapter into its base model (W + scale·alpha/r·B·A) and write a plain GGUF\nthat llama.cpp and Ollama load without the adapter.")
	out := fs.String("out", "", "merged model file")
	base := fs.String("base", "", "base model (default: the run folder's base)")
	typ := fs.String("type", "f16", "type of the merged weights: f16, q8_0 or f32 (other tensors are copied as they are)")
	scale := fs.Float64("scale", 1, "adapter scale")
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	setVerbose(*verbose)
	if len(pos) != 1 || *out == "" {
		return usageErr("give one run folder or adapter file, and --out")
	}
	adapter := pos[0]
	if st, err := os.Stat(adapter); err == nil && st.IsDir() {
		if *base == "" {
			b, err := os.ReadFile(filepath.Join(adapter, job.BaseFile))
			if err != nil {
				return fmt.Errorf("%s: no %s naming the base model; give --base", adapter, job.BaseFile)
			}
			*base = strings.TrimSpace(string(b))
		}
		adapter = filepath.Join(adapter, job.AdapterFile)
	}
	if *base == "" {
		return usageErr("--base is required with an adapter file")
	}
	if err := adapters.Merge(*base, adapter, *out, *typ, float32(*scale)); err != nil {
		return err
	}
	log.Info("merged", "base", *base, "adapter", adapter, "type", *typ)
	fmt.Println(*out)
	return nil
}
