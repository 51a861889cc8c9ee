package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/runs"
)

// peftFixture writes a GQA base model and a random adapter for it on
// attn_q, attn_k and ffn_down of both blocks, pairs in name order.
func peftFixture(t *testing.T) (base, adapter string) {
	t.Helper()
	dir := t.TempDir()
	base = filepath.Join(dir, "base.gguf")
	if err := testmodel.Write(base, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 96, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	l := &adapters.LoRA{Architecture: "llama", Alpha: 16}
	for b := 0; b < 2; b++ {
		for _, w := range []struct {
			name      string
			nIn, nOut int
		}{{"attn_k", 64, 32}, {"attn_q", 64, 64}, {"ffn_down", 96, 64}} {
			p := adapters.Pair{Base: fmt.Sprintf("blk.%d.%s.weight", b, w.name), NIn: w.nIn, NOut: w.nOut, Rank: 4,
				A: make([]float32, 4*w.nIn), B: make([]float32, 4*w.nOut)}
			for i := range p.A {
				p.A[i] = float32(rng.NormFloat64())
			}
			for i := range p.B {
				p.B[i] = float32(rng.NormFloat64())
			}
			l.Pairs = append(l.Pairs, p)
		}
	}
	adapter = filepath.Join(dir, "adapter.gguf")
	if err := adapters.Write(adapter, l); err != nil {
		t.Fatal(err)
	}
	return base, adapter
}

// TestExportPEFTCLI: export peft then import-peft gives back the adapter
// file byte for byte, from an adapter file and from a run folder; inspect
// reads the result as an adapter.
func TestExportPEFTCLI(t *testing.T) {
	base, adapter := peftFixture(t)
	dir := filepath.Join(t.TempDir(), "peft")
	r := cli(t, "export", "peft", adapter, "--base", base, "--out", dir, "--base-name", "org/model")
	if r.code != 0 || strings.TrimSpace(r.stdout) != dir {
		t.Fatalf("export peft: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, adapters.PEFTConfigFile))
	if err != nil || !bytes.Contains(cfg, []byte(`"base_model_name_or_path": "org/model"`)) || !bytes.Contains(cfg, []byte(`"lora_alpha": 16,`)) {
		t.Fatalf("adapter_config.json: %v\n%s", err, cfg)
	}
	back := filepath.Join(t.TempDir(), "back.gguf")
	if r := cli(t, "export", "import-peft", dir, "--base", base, "--out", back); r.code != 0 || strings.TrimSpace(r.stdout) != back {
		t.Fatalf("import-peft: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	want, _ := os.ReadFile(adapter)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, want) {
		t.Fatalf("re-imported adapter (%d bytes) differs from the original (%d bytes)", len(got), len(want))
	}
	if r := cli(t, "inspect", back); r.code != 0 || !strings.Contains(r.stdout, "lora, rank 4, alpha 16") {
		t.Fatalf("inspect: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A run folder made before run.json names its base in base.txt.
	run := t.TempDir()
	data, _ := os.ReadFile(adapter)
	os.WriteFile(filepath.Join(run, runs.AdapterFile), data, 0o644)
	os.WriteFile(filepath.Join(run, runs.LegacyBaseFile), []byte(base+"\n"), 0o644)
	dir2 := filepath.Join(t.TempDir(), "peft")
	if r := cli(t, "export", "peft", run, "--out", dir2); r.code != 0 {
		t.Fatalf("export peft RUN_DIR: exit %d: %s", r.code, r.stderr)
	}
	for _, f := range []string{adapters.PEFTWeightsFile, adapters.PEFTConfigFile} {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		if f == adapters.PEFTConfigFile {
			a = bytes.Replace(a, []byte("org/model"), []byte("finetune test model L2 E64 H4/2 FF96 f32"), 1)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s from the run folder differs from the one from the adapter file:\n%s\n%s", f, a, b)
		}
	}
}

// TestExportPEFTCLIErrors: bad arguments exit 2 with a usage message; bad
// input exits 1 with a one-line error naming the file.
func TestExportPEFTCLIErrors(t *testing.T) {
	base, adapter := peftFixture(t)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "model.safetensors"), nil, 0o644)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"export", "peft", adapter, "--base", base}, "--out"},
		{"no base for a file", []string{"export", "peft", adapter, "--out", t.TempDir()}, "--base is required"},
		{"import without base", []string{"export", "import-peft", t.TempDir(), "--out", "x.gguf"}, "--base is required"},
		{"import two folders", []string{"export", "import-peft", "a", "b", "--base", base, "--out", "x.gguf"}, "one PEFT adapter folder"},
		{"unknown command", []string{"export", "lora"}, "want merge, peft or import-peft"},
		{"no command", []string{"export"}, "finetune export import-peft DIR --base M.gguf --out A.gguf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, want 2 and %q in stderr:\n%s", r.code, c.want, r.stderr)
			}
		})
	}
	empty := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"folder holds a model", []string{"export", "peft", adapter, "--base", base, "--out", full}, []string{full, "model.safetensors", "new or empty folder"}},
		{"not a PEFT folder", []string{"export", "import-peft", empty, "--base", base, "--out", filepath.Join(empty, "a.gguf")}, []string{empty, adapters.PEFTConfigFile}},
		{"base is not a model", []string{"export", "peft", adapter, "--base", adapter, "--out", t.TempDir()}, []string{adapter}},
	} {
		t.Run(c.name, func(t *testing.T) { wantCleanError(t, cli(t, c.args...), c.want...) })
	}
	if r := cli(t, "export", "-h"); r.code != 0 || !strings.Contains(r.stdout, "import-peft DIR --base M.gguf --out A.gguf") {
		t.Fatalf("export -h: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
