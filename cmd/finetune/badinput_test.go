package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// TestTruncatedModel cuts a real model at offsets in every region of the
// file: each cut must give one line naming the file, never a crash.
func TestTruncatedModel(t *testing.T) {
	src := shared.Path(t, "models/stories260K.gguf")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	offsets := []int{0, 3, 4, 7, 12, 23, 24, 40, 100, 1000, 5000, int(f.DataOffset) - 1, int(f.DataOffset), int(f.DataOffset) + 1000, len(data) / 2, len(data) - 1}
	for _, off := range offsets {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("cut-%d.gguf", off))
			if err := os.WriteFile(path, data[:off], 0o644); err != nil {
				t.Fatal(err)
			}
			r := cli(t, "generate", "--model", path, "--prompt", "Once", "--max-tokens", "2", "--threads", "1")
			wantCleanError(t, r, path)
			if off > 4 && !strings.Contains(r.stderr, "truncated") && !strings.Contains(r.stderr, "incomplete") {
				t.Fatalf("cut at %d: error does not say the file is truncated: %s", off, r.stderr)
			}
		})
	}
}

// TestCorruptHeader flips bytes all over a real model's metadata. The file
// may stay loadable (a flipped letter in a token's text); otherwise the
// command must fail with one line naming the file. It must never crash.
func TestCorruptHeader(t *testing.T) {
	src := shared.Path(t, "models/stories260K.gguf")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	header := int(f.DataOffset)
	var positions []int
	for p := 0; p < 40; p++ {
		positions = append(positions, p)
	}
	for p := 40; p < header; p += header / 60 {
		positions = append(positions, p)
	}
	// The key/value and tensor-info bytes of the hyper-parameters and shapes.
	for _, key := range []string{"llama.embedding_length", "llama.attention.head_count", "llama.attention.head_count_kv", "llama.block_count", "llama.context_length", "llama.rope.dimension_count", "blk.0.attn_q.weight", "token_embd.weight"} {
		if i := strings.Index(string(data[:header]), key); i >= 0 {
			for p := i + len(key); p < i+len(key)+16 && p < header; p++ {
				positions = append(positions, p)
			}
		}
	}
	failed := 0
	for _, p := range positions {
		for _, flip := range []func(byte) byte{func(b byte) byte { return b ^ 0xFF }, func(b byte) byte { return b ^ 0x01 }} {
			mut := append([]byte(nil), data...)
			mut[p] = flip(mut[p])
			path := filepath.Join(dir, fmt.Sprintf("flip-%d.gguf", p))
			if err := os.WriteFile(path, mut, 0o644); err != nil {
				t.Fatal(err)
			}
			r := cli(t, "generate", "--model", path, "--prompt", "Once", "--max-tokens", "2", "--threads", "1")
			if r.signal != "" {
				t.Fatalf("byte %d flipped to %#x: crashed with %s:\n%s", p, mut[p], r.signal, r.stderr)
			}
			if r.code != 0 {
				failed++
				if lines := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; lines != 1 || !strings.Contains(r.stderr, path) {
					t.Fatalf("byte %d flipped to %#x: want one line naming the file, got:\n%s", p, mut[p], r.stderr)
				}
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no flipped header was rejected: the checks are not running")
	}
	t.Logf("%d flips, %d rejected", 2*len(positions), failed)
}

// writeAdapter writes a LoRA adapter GGUF for the given base weights.
func writeAdapter(t *testing.T, path, arch string, targets map[string][2]uint64, rank uint64) {
	t.Helper()
	var tensors []gguf.Tensor
	for name, shape := range targets {
		a := make([]byte, shape[0]*rank*4)
		b := make([]byte, rank*shape[1]*4)
		tensors = append(tensors,
			gguf.Tensor{Name: name + ".lora_a", Dims: []uint64{shape[0], rank}, Type: gguf.F32, Data: a},
			gguf.Tensor{Name: name + ".lora_b", Dims: []uint64{rank, shape[1]}, Type: gguf.F32, Data: b})
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: float32(16)},
	}
	if err := gguf.Write(path, kv, tensors); err != nil {
		t.Fatal(err)
	}
}

func TestAdapter(t *testing.T) {
	base := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gguf")
	writeAdapter(t, good, "llama", map[string][2]uint64{"blk.0.attn_q.weight": {64, 64}, "blk.1.ffn_up.weight": {64, 172}}, 4)
	// lora_b is zero, so the adapter must not change greedy output.
	plain := cli(t, "generate", "--model", base, "--prompt", "Once upon a time", "--max-tokens", "30")
	with := cli(t, "generate", "--model", base, "--adapter", good, "--adapter-scale", "2", "--prompt", "Once upon a time", "--max-tokens", "30")
	if with.code != 0 || plain.code != 0 {
		t.Fatalf("exit %d/%d: %s %s", plain.code, with.code, plain.stderr, with.stderr)
	}
	if plain.stdout != with.stdout {
		t.Fatalf("a zero adapter changed the output:\n%q\n%q", plain.stdout, with.stdout)
	}

	other := filepath.Join(dir, "other-base.gguf")
	if err := testmodel.Write(filepath.Join(dir, "wide.gguf"), testmodel.Config{Layers: 1, Embd: 128, Heads: 4, KVHeads: 4, FF: 256}); err != nil {
		t.Fatal(err)
	}
	writeAdapter(t, other, "llama", map[string][2]uint64{"blk.0.attn_q.weight": {128, 128}}, 4)
	wrongArch := filepath.Join(dir, "wrong-arch.gguf")
	writeAdapter(t, wrongArch, "qwen2", map[string][2]uint64{"blk.0.attn_q.weight": {64, 64}}, 4)
	tooDeep := filepath.Join(dir, "too-deep.gguf")
	writeAdapter(t, tooDeep, "llama", map[string][2]uint64{"blk.7.attn_q.weight": {64, 64}}, 4)
	for _, c := range []struct {
		name, file string
		want       []string
	}{
		{"other base", other, []string{other, "blk.0.attn_q.weight", "128", "64", "wrong base model"}},
		{"wrong architecture", wrongArch, []string{wrongArch, "qwen2"}},
		{"tensor the base lacks", tooDeep, []string{tooDeep, "blk.7.attn_q.weight"}},
		{"a model, not an adapter", base, []string{base, "not an adapter"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, "generate", "--model", base, "--adapter", c.file, "--prompt", "Once", "--max-tokens", "2", "--threads", "1")
			wantCleanError(t, r, c.want...)
		})
	}
}
