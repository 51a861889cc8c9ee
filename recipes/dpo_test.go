package recipes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDPOKeys: train.method, beta, rpo_alpha and init are validated with
// the line they are on, beta defaults to TRL's 0.1 for dpo, and a resolved
// DPO recipe loads again.
func TestDPOKeys(t *testing.T) {
	dpo := strings.Replace(good, "  learning_rate: 1e-3", "  learning_rate: 1e-3\n  method: dpo", 1)
	r, err := Load(write(t, dpo), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Train.Method != "dpo" || r.Train.Beta != 0.1 || r.Train.RPOAlpha != 0 {
		t.Fatalf("dpo defaults: %+v", r.Train)
	}
	out, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(write(t, string(out)), nil); err != nil {
		t.Fatalf("resolved DPO recipe: %v", err)
	}
	if r, err := Load(write(t, good), nil); err != nil || r.Train.Method != "sft" || r.Train.Beta != 0 {
		t.Fatalf("sft default: %+v %v", r, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sft.gguf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = Load(write(t, dpo), []string{"train.init=" + filepath.Join(dir, "sft.gguf"), "train.beta=0.5", "train.rpo_alpha=1"})
	if err != nil || r.Train.Init == "" || r.Train.Beta != 0.5 || r.Train.RPOAlpha != 1 {
		t.Fatalf("overrides: %+v %v", r, err)
	}
	for _, c := range []struct{ edit, want string }{
		{"  method: ppo", `recipe.yaml:13: train.method: "ppo": use sft (supervised) or dpo`},
		{"  method: dpo\n  beta: -1", "recipe.yaml:14: train.beta: -1: DPO's beta must be positive"},
		{"  method: dpo\n  rpo_alpha: -1", "recipe.yaml:14: train.rpo_alpha: -1: must not be negative"},
		{"  beta: 0.2", "recipe.yaml:13: train.beta: applies to train.method: dpo only (the method is sft)"},
		{"  rpo_alpha: 0.2", "recipe.yaml:13: train.rpo_alpha: applies to train.method: dpo only"},
	} {
		body := strings.Replace(good, "  learning_rate: 1e-3", "  learning_rate: 1e-3\n"+c.edit, 1)
		_, err := Load(write(t, body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v\nwant it to contain %q", c.edit, err, c.want)
		}
	}
}
