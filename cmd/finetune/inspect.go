package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/modelinfo"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

func absPath(p string) (string, error) { return filepath.Abs(p) }

func runInspect(args []string) error {
	fs := newFlags("inspect")
	asJSON := fs.Bool("json", false, "print JSON")
	tensors := fs.Bool("tensors", false, "list every tensor")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("inspect takes one GGUF file, got %d arguments", len(pos))
	}
	f, err := llama.OpenGGUF(pos[0])
	if err != nil {
		return err
	}
	info := modelinfo.Describe(f, *tensors)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printInfo(info)
	return nil
}

func printInfo(in *modelinfo.Info) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(w, "%s\t%s\n", k, fmt.Sprintf(format, args...))
	}
	row("file", "%s (%s, GGUF v%d)", in.Path, textfmt.HumanBytes(uint64(in.FileSize)), in.GGUFVersion)
	if in.Name != "" {
		row("name", "%s", in.Name)
	}
	row("architecture", "%s", orDash(in.Architecture))
	if in.Adapter != nil {
		row("adapter", "%s, rank %d, alpha %g", in.Adapter.Type, in.Adapter.Rank, in.Adapter.Alpha)
	}
	row("file type", "%s", orDash(in.FileType))
	row("parameters", "%s (%d)", humanCount(in.Params), in.Params)
	if h := in.Hyper; h != nil {
		row("context length", "%d", h.ContextLength)
		row("embedding", "%d", h.Embedding)
		row("layers", "%d", h.Layers)
		row("heads", "%d (KV heads %d, head size %d)", h.Heads, h.KVHeads, h.HeadDim)
		row("feed-forward", "%d", h.FeedForward)
		row("rope", "dims %d, freq base %g", h.RopeDim, h.RopeFreqBase)
		row("rms norm eps", "%g", h.RMSEpsilon)
	}
	if v := in.Vocab; v != nil {
		row("vocabulary", "%s, %d tokens (tokenizer.ggml.model %q%s)", v.Type, v.Size, v.Model, pre(v.Pre))
		var sp []string
		for _, s := range v.Special {
			sp = append(sp, fmt.Sprintf("%s=%d %q", s.Role, s.ID, s.Text))
		}
		row("special tokens", "%s", orDash(strings.Join(sp, ", ")))
	}
	if in.ChatTemplate {
		row("chat template", "embedded (%d bytes)", in.ChatTemplateLength)
	} else {
		row("chat template", "none")
	}
	var types []string
	for _, t := range in.TensorTypes {
		types = append(types, fmt.Sprintf("%s ×%d (%s)", t.Type, t.Tensors, textfmt.HumanBytes(t.Bytes)))
	}
	row("tensors", "%d: %s", in.TensorCount, strings.Join(types, ", "))
	w.Flush()
	if len(in.ArchKeys) > 0 {
		fmt.Println("\narchitecture keys")
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		for _, k := range slices.Sorted(maps.Keys(in.ArchKeys)) {
			fmt.Fprintf(w, "  %s.%s\t%v\n", in.Architecture, k, in.ArchKeys[k])
		}
		w.Flush()
	}
	if len(in.Tensors) > 0 {
		fmt.Println("\ntensors")
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		for _, t := range in.Tensors {
			fmt.Fprintf(w, "  %s\t%s\t%v\t%s\n", t.Name, t.Type, t.Shape, textfmt.HumanBytes(t.Bytes))
		}
		w.Flush()
	}
}

func pre(p string) string {
	if p == "" {
		return ""
	}
	return ", pre " + p
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanCount(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
