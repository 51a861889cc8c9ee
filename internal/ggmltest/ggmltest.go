// Package ggmltest finds the ggml backend libraries tests run on.
package ggmltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BLAS returns the path of libggml-blas.so (ggml's BLAS backend over
// OpenBLAS, a second backend that runs on the CPU): from FINETUNE_LIB_PATH
// or bin/lib, else built, or taken from the build cache, by
// scripts/build-ggml-backend.sh. Where it cannot be had the test is skipped,
// saying so on stderr too, since a skip is easy to miss.
func BLAS(t testing.TB) string {
	t.Helper()
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dirs := filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH"))
	for _, d := range append(dirs, filepath.Join(repo, "bin", "lib")) {
		if f := filepath.Join(d, "libggml-blas.so"); d != "" && exists(f) {
			return f
		}
	}
	cmd := exec.Command(filepath.Join(repo, "scripts", "build-ggml-backend.sh"), "blas", "--out", "")
	cmd.Dir = repo
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if f := strings.TrimSpace(string(out)); err == nil && exists(f) {
		return f
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	lines = lines[max(0, len(lines)-5):]
	msg := fmt.Sprintf("SKIP %s: no libggml-blas.so, and building it failed (%v): run 'make blas' (needs cmake and apt's libopenblas-dev, pkg-config)\n%s", t.Name(), err, strings.Join(lines, "\n"))
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
	return ""
}

// repoRoot is the folder of go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if exists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("ggmltest: no go.mod above the working directory")
		}
		dir = up
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
