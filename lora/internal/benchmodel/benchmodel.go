// Package benchmodel finds the real model files lora's benchmarks train on
// (from the shared folder, internal/shared) and writes the F32 copies they
// compare the quantized files with.
package benchmodel

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// SmolLM2 is HuggingFaceTB's SmolLM2-135M-Instruct in the shared folder:
// Q4_1 weights, a Q8_0 token embedding that is also the output head.
const SmolLM2 = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

// Shared is the path of rel ("models/x.gguf") in the shared folder, or an
// error that says in one line why it is not there.
func Shared(rel string) (string, error) {
	dir := shared.Dir()
	if dir == "" {
		return "", fmt.Errorf("no shared folder (set FINETUNE_SHARED or put shared/ beside the checkout), so no %s", rel)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing from the shared folder %s", rel, dir)
	}
	return p, nil
}

// F32Copy is the path of an F32 copy of the model at src in dir: every
// weight dequantized by llama.cpp's quantizer (llama_model_quantize with
// F32 output, what `finetune export merge --type f32` uses), metadata and
// vocabulary as they are. It is written the first time, and again only
// when src is newer than the copy; wrote says whether it was written now.
func F32Copy(src, dir string) (path string, wrote bool, err error) {
	name := strings.TrimSuffix(filepath.Base(src), ".gguf") + ".f32.gguf"
	path = filepath.Join(dir, name)
	sst, err := os.Stat(src)
	if err != nil {
		return "", false, err
	}
	if st, err := os.Stat(path); err == nil && !st.ModTime().Before(sst.ModTime()) {
		return path, false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", false, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := llama.Quantize(src, tmp.Name(), llama.FileTypeF32, llama.QuantizeOptions{Threads: runtime.NumCPU()}); err != nil {
		return "", false, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// File is the file a benchmark shape trains on: the shared model rel (its
// F32 copy in cache when f32) when rel is not "", else the test model cfg
// at cache/name, written when it is not there yet; wrote says whether a
// file was written now.
func File(rel string, f32 bool, cfg testmodel.Config, cache, name string) (path string, wrote bool, err error) {
	if rel != "" {
		path, err := Shared(rel)
		if err != nil || !f32 {
			return path, false, err
		}
		return F32Copy(path, cache)
	}
	path = filepath.Join(cache, name)
	if _, err := os.Stat(path); err == nil {
		return path, false, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", false, err
	}
	return path, true, testmodel.Write(path, cfg)
}
