package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

type doctorReport struct {
	Finetune    string         `json:"finetune"`
	Ollama      string         `json:"ollama_module"`
	LlamaCpp    string         `json:"llama_cpp"`
	Go          string         `json:"go"`
	Platform    string         `json:"platform"`
	BuildFlags  string         `json:"build_flags,omitempty"`
	SystemInfo  string         `json:"system_info"`
	Features    []ggml.Feature `json:"cpu_features"`
	MissingSIMD []string       `json:"missing_simd"`
	AMX         string         `json:"amx,omitempty"`
	Threads     int            `json:"threads"`
	Backends    []string       `json:"backends"`
	Devices     []ggml.Device  `json:"devices"`
	GPUs        int            `json:"gpus"`
	LibPath     []string       `json:"backend_search_path"`
	LibSearched []string       `json:"backend_folders_found"`
	Libraries   []ggml.Library `json:"backend_libraries"`
}

func runDoctor(args []string) error {
	fs := newFlags("doctor")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	r := doctorReport{Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Threads: runtime.NumCPU(), BuildFlags: strings.ReplaceAll(buildFlags, "_", " ")}
	r.Finetune, r.Ollama, r.LlamaCpp = versions()
	r.LibPath = backendPath()
	r.LibSearched = loadBackends()
	r.Libraries = ggml.Libraries()
	r.SystemInfo = llama.SystemInfo()
	r.Features = ggml.Features()
	r.MissingSIMD = ggml.MissingSIMD()
	if runtime.GOARCH == "amd64" {
		r.AMX = ggml.AMXStatus()
	}
	r.Backends = ggml.Backends()
	r.Devices = ggml.Devices()
	for _, d := range r.Devices {
		if d.Type == ggml.DeviceGPU || d.Type == ggml.DeviceIGPU {
			r.GPUs++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}

	w := os.Stdout
	fmt.Fprintf(w, "finetune        %s\n", r.Finetune)
	fmt.Fprintf(w, "ollama module   %s\n", r.Ollama)
	fmt.Fprintf(w, "llama.cpp/ggml  %s\n", r.LlamaCpp)
	fmt.Fprintf(w, "go              %s %s\n", r.Go, r.Platform)
	if r.BuildFlags != "" {
		fmt.Fprintf(w, "build flags     %s\n", r.BuildFlags)
	}
	fmt.Fprintf(w, "threads         %d\n", r.Threads)
	fmt.Fprintf(w, "system info     %s\n", r.SystemInfo)
	if len(r.Features) > 0 {
		fmt.Fprintf(w, "\nCPU features    %-12s %-9s %s\n", "", "compiled", "this CPU")
		for _, f := range r.Features {
			mark := ""
			if f.Available && !f.Compiled {
				mark = "  <- not used by this build"
			}
			fmt.Fprintf(w, "                %-12s %-9s %s%s\n", f.Name, yesNo(f.Compiled), yesNo(f.Available), mark)
		}
	}
	if len(r.MissingSIMD) > 0 {
		fmt.Fprintf(w, "\nWARNING: built without %s, which this CPU has; ggml runs many times slower.\n", strings.Join(r.MissingSIMD, ", "))
		fmt.Fprintf(w, "         Rebuild with 'make build', or set CGO_CFLAGS and CGO_CXXFLAGS to\n         '%s' for go build/install.\n", simdFlags)
	} else {
		fmt.Fprintln(w, "\nSIMD            this build uses every SIMD extension ggml can use on this CPU")
	}
	if r.AMX != "" {
		fmt.Fprintf(w, "AMX tiles       %s", r.AMX)
		if ggml.AMX() {
			fmt.Fprint(w, ": train.precision bf16 (auto, for a quantized base) multiplies by the frozen weights on them")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nbackends        %s\n", strings.Join(r.Backends, ", "))
	fmt.Fprintln(w, "devices")
	for _, d := range r.Devices {
		line := fmt.Sprintf("  %-10s %-11s %s", d.Name, d.Type, d.Description)
		if d.MemoryTotal > 0 {
			line += fmt.Sprintf(", %s of %s free", textfmt.HumanBytes(d.MemoryFree), textfmt.HumanBytes(d.MemoryTotal))
		}
		if d.ComputeMajor > 0 {
			line += fmt.Sprintf(", compute capability %d.%d", d.ComputeMajor, d.ComputeMinor)
		}
		if d.Path != "" {
			line += ", from " + d.Path
		} else if d.Library != "" && d.Library != d.Backend {
			line += ", library " + d.Library
		}
		fmt.Fprintln(w, line)
	}
	if r.GPUs == 0 {
		fmt.Fprintln(w, "GPUs            none found: training and generation run on the CPU")
	}
	fmt.Fprintln(w, "\nbackend libraries (libggml-*.so) are searched in FINETUNE_LIB_PATH, then lib/ beside the executable:")
	found := map[string]bool{}
	for _, d := range r.LibSearched {
		found[d] = true
	}
	listed := map[string]bool{}
	for _, d := range r.LibPath {
		state := "absent"
		if abs, err := absPath(d); err == nil && found[abs] {
			state = "searched"
		}
		abs, err := absPath(d)
		if err == nil && listed[abs] {
			state = "the same folder as above"
		}
		fmt.Fprintf(w, "  %s (%s)\n", d, state)
		if err != nil || listed[abs] {
			continue
		}
		listed[abs] = true
		for _, l := range r.Libraries {
			if filepath.Dir(l.Path) != abs {
				continue
			}
			switch {
			case l.Backend != "" && l.Warning != "":
				fmt.Fprintf(w, "    %-20s loaded: %s, %d device(s); WARNING: %s\n", filepath.Base(l.Path), l.Backend, l.Devices, l.Warning)
			case l.Backend != "":
				fmt.Fprintf(w, "    %-20s loaded: %s, %d device(s)\n", filepath.Base(l.Path), l.Backend, l.Devices)
			case strings.HasPrefix(l.Error, "skipped"):
				fmt.Fprintf(w, "    %-20s %s\n", filepath.Base(l.Path), l.Error)
			default:
				fmt.Fprintf(w, "    %-20s not loaded: %s\n", filepath.Base(l.Path), l.Error)
			}
		}
	}
	if len(r.Libraries) == 0 {
		fmt.Fprintln(w, "  no backend library found: 'make cuda' or 'make blas' builds one into bin/lib")
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
