package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/runs"
)

// adapterAndBase resolves the adapter argument: a run folder gives its
// adapter and, unless base is set, the base model it was trained on.
func adapterAndBase(arg, base string) (adapter, basePath string, err error) {
	if st, err := os.Stat(arg); err == nil && st.IsDir() {
		run, err := runs.Open(arg)
		if err != nil {
			return "", "", err
		}
		if base == "" {
			base = run.Base()
		}
		if _, err := os.Stat(run.Adapter()); err != nil {
			return "", "", fmt.Errorf("%s: no %s in this run folder (did the training finish?)", arg, runs.AdapterFile)
		}
		return run.Adapter(), base, nil
	}
	if base == "" {
		return "", "", usageErr("--base is required with an adapter file")
	}
	return arg, base, nil
}

func runExportMerge(args []string) error {
	fs := newFlags("export merge")
	out := fs.String("out", "", "merged model file")
	base := fs.String("base", "", "base model (default: the run folder's base)")
	typ := fs.String("type", "", "type of the merged model: "+strings.Join(llama.FileTypeNames(), ", ")+" (default: the base's own type)")
	threads := fs.Int("threads", runtime.NumCPU(), "CPU threads quantizing")
	scale := fs.Float64("scale", 1, "adapter scale")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return usageErr("give one run folder or adapter file, and --out")
	}
	adapter, basePath, err := adapterAndBase(pos[0], *base)
	if err != nil {
		return err
	}
	if *scale == 0 {
		return usageErr("--scale 0 merges nothing: the base model is the result")
	}
	if *typ != "" {
		if _, err := llama.ParseFileType(*typ); err != nil {
			return usageErr("--type: %v", err)
		}
	}
	start := time.Now()
	ft, err := adapters.Merge(basePath, adapter, *out, adapters.MergeOptions{Type: *typ, Scale: float32(*scale), Threads: *threads})
	if err != nil {
		return err
	}
	log.Info("merged", "base", basePath, "adapter", adapter, "type", ft, "took", time.Since(start).Round(time.Millisecond))
	fmt.Println(*out)
	return nil
}

func runExportPEFT(args []string) error {
	fs := newFlags("export peft")
	out := fs.String("out", "", "output folder")
	base := fs.String("base", "", "base model the adapter was trained on (default: the run folder's base)")
	name := fs.String("base-name", "", "base_model_name_or_path to write, e.g. a Hugging Face repo id (default: the base's general.name)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return usageErr("give one run folder or adapter file, and --out")
	}
	adapter, basePath, err := adapterAndBase(pos[0], *base)
	if err != nil {
		return err
	}
	if err := adapters.ExportPEFT(adapter, basePath, *out, adapters.ExportOptions{BaseModelName: *name}); err != nil {
		return err
	}
	log.Info("exported PEFT adapter", "adapter", adapter, "base", basePath)
	fmt.Println(*out)
	return nil
}

func runImportPEFT(args []string) error {
	fs := newFlags("export import-peft")
	out := fs.String("out", "", "GGUF adapter to write")
	base := fs.String("base", "", "GGUF base model the adapter was trained on (required)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1 || *out == "":
		return usageErr("give one PEFT adapter folder, and --out")
	case *base == "":
		return usageErr("--base is required")
	}
	if err := adapters.ImportPEFT(pos[0], *base, *out); err != nil {
		return err
	}
	log.Info("imported PEFT adapter", "dir", pos[0], "base", *base)
	fmt.Println(*out)
	return nil
}
