package main

import (
	"os"
	"path/filepath"

	"github.com/finetune-dev/finetune/internal/ggml"
)

// backendPath is where GPU backend libraries are looked for: the folders in
// FINETUNE_LIB_PATH (a path list), then lib/ beside the executable.
func backendPath() []string {
	var dirs []string
	if v := os.Getenv("FINETUNE_LIB_PATH"); v != "" {
		dirs = append(dirs, filepath.SplitList(v)...)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "lib"))
	}
	return dirs
}

// loadBackends loads any GPU backend libraries found on the backend path.
func loadBackends() []string { return ggml.LoadBackends(backendPath()) }
