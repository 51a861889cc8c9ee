package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/runs"
)

const exportUsage = `Usage:
  finetune export merge RUN_DIR|ADAPTER.gguf --out M.gguf [--base B.gguf] [--type f16|q8_0|f32] [--scale S]
  finetune export peft RUN_DIR|ADAPTER.gguf --out DIR [--base B.gguf] [--base-name NAME]
  finetune export import-peft DIR --base M.gguf --out A.gguf

  merge        fold the adapter into the base: a plain GGUF that llama.cpp and Ollama load
  peft         write the adapter as a Hugging Face PEFT adapter (adapter_model.safetensors
               and adapter_config.json) for transformers/PEFT, vLLM or Ollama
  import-peft  convert a Hugging Face PEFT LoRA adapter into a GGUF adapter for its base
`

func runExport(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(os.Stderr, exportUsage)
		if len(args) == 0 {
			return usageErr("export takes a command: merge, peft or import-peft")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "merge":
		return runExportMerge(args[1:])
	case "peft":
		return runExportPEFT(args[1:])
	case "import-peft":
		return runImportPEFT(args[1:])
	}
	return usageErr("unknown export command %q (want merge, peft or import-peft)", args[0])
}

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
	fs := newFlags("export merge", "RUN_DIR|ADAPTER.gguf --out M.gguf [flags]",
		"Fold a LoRA adapter into its base model (W + scale·alpha/r·B·A) and write a plain GGUF\nthat llama.cpp and Ollama load without the adapter.")
	out := fs.String("out", "", "merged model file")
	base := fs.String("base", "", "base model (default: the run folder's base)")
	typ := fs.String("type", "f16", "type of the merged weights: f16, q8_0 or f32 (other tensors are copied as they are)")
	scale := fs.Float64("scale", 1, "adapter scale")
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	setVerbose(*verbose)
	if len(pos) != 1 || *out == "" {
		return usageErr("give one run folder or adapter file, and --out")
	}
	adapter, basePath, err := adapterAndBase(pos[0], *base)
	if err != nil {
		return err
	}
	if err := adapters.Merge(basePath, adapter, *out, *typ, float32(*scale)); err != nil {
		return err
	}
	log.Info("merged", "base", basePath, "adapter", adapter, "type", *typ)
	fmt.Println(*out)
	return nil
}

func runExportPEFT(args []string) error {
	fs := newFlags("export peft", "RUN_DIR|ADAPTER.gguf --out DIR [flags]",
		"Write a Llama LoRA adapter as a Hugging Face PEFT adapter: DIR gets adapter_model.safetensors\n"+
			"(F32, Hugging Face tensor names and row order) and adapter_config.json. DIR must be new,\n"+
			"empty or an earlier export; its two files are replaced.")
	out := fs.String("out", "", "output folder")
	base := fs.String("base", "", "base model the adapter was trained on (default: the run folder's base)")
	name := fs.String("base-name", "", "base_model_name_or_path to write, e.g. a Hugging Face repo id (default: the base's general.name)")
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	setVerbose(*verbose)
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
	fs := newFlags("export import-peft", "DIR --base M.gguf --out A.gguf",
		"Convert the Hugging Face PEFT LoRA adapter in DIR (adapter_config.json and\n"+
			"adapter_model.safetensors, F32, F16 or BF16) into a GGUF adapter for the Llama base model M.gguf.")
	out := fs.String("out", "", "GGUF adapter to write")
	base := fs.String("base", "", "GGUF base model the adapter was trained on (required)")
	verbose := verboseFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	setVerbose(*verbose)
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
