package llama

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/finetune-dev/finetune/internal/gguf"
)

// A base model whose output head is its token embedding (no output.weight:
// Llama 3.2 1B/3B, SmolLM, ...) gives llama.cpp one tensor for both. An
// adapter that updates the head ("output.weight.lora_*") then names a
// tensor llama.cpp does not have, and one that updates the embedding would
// be applied to the head too, with the wrong shapes. Such adapters run on
// the base untied: the same file with output.weight, a copy of the token
// embedding, added.

// NeedsUntied reports whether the adapter at adapterPath updates the head
// or the embedding of base, and base ties them.
func NeedsUntied(adapterPath string, base *gguf.File) (bool, error) {
	if _, ok := base.Tensor("output.weight"); ok {
		return false, nil
	}
	a, err := OpenGGUF(adapterPath)
	if err != nil {
		return false, err
	}
	for _, t := range a.Tensors {
		name, _, ok := cutLoRASuffix(t.Name)
		if ok && (name == "output.weight" || name == "token_embd.weight") {
			return true, nil
		}
	}
	return false, nil
}

// BaseFor is the model file to load for base with the adapters at
// adapterPaths: base itself, or base untied (UntiedBase, in the user's
// cache folder) when an adapter updates the head or the embedding that
// base ties.
func BaseFor(base string, adapterPaths []string) (string, error) {
	if len(adapterPaths) == 0 {
		return base, nil
	}
	f, err := OpenGGUF(base)
	if err != nil {
		return "", err
	}
	for _, a := range adapterPaths {
		need, err := NeedsUntied(a, f)
		if err != nil {
			return "", err
		}
		if need {
			dir, err := os.UserCacheDir()
			if err != nil {
				return "", err
			}
			return UntiedBase(base, filepath.Join(dir, "finetune", "untied"))
		}
	}
	return base, nil
}

// UntiedBase returns the path of base untied, written once into cacheDir
// (keyed by the base file's path, size and modification time) and reused.
func UntiedBase(basePath, cacheDir string) (string, error) {
	abs, err := filepath.Abs(basePath)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs + "\x00" + strconv.FormatInt(st.Size(), 10) + "\x00" + st.ModTime().UTC().String()))
	name := filepath.Base(abs)
	out := filepath.Join(cacheDir, name[:len(name)-len(filepath.Ext(name))]+"-untied-"+hex.EncodeToString(sum[:6])+".gguf")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	if err := Untie(abs, out); err != nil {
		return "", err
	}
	return out, nil
}

// Untie writes to out the model at basePath with output.weight, a copy of
// its token embedding, added (out is replaced atomically).
func Untie(basePath, out string) error {
	base, err := OpenGGUF(basePath)
	if err != nil {
		return err
	}
	if _, ok := base.Tensor("output.weight"); ok {
		return fmt.Errorf("%s: already has an output head of its own", basePath)
	}
	var tensors []gguf.Tensor
	for _, ti := range base.Tensors {
		data, err := base.ReadTensorData(ti.Name)
		if err != nil {
			return err
		}
		tensors = append(tensors, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
		if ti.Name == "token_embd.weight" {
			tensors = append(tensors, gguf.Tensor{Name: "output.weight", Dims: ti.Dims, Type: ti.Type, Data: data})
		}
	}
	kv := make([]gguf.KV, 0, len(base.KV))
	for _, e := range base.KV {
		if e.Key != "general.alignment" {
			kv = append(kv, e)
		}
	}
	return gguf.Write(out, kv, tensors)
}
