package recipes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A resolved recipe (what a run keeps as recipe.yaml) is itself a valid
// recipe that resolves to the same Recipe: every shipped recipe, the
// defaults, and the settings whose defaults depend on one another.
func TestResolvedRecipeRoundTrips(t *testing.T) {
	srcs := map[string]string{
		"defaults":          "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\n",
		"eval file":         "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\n  eval: e.jsonl\n",
		"eval ratio":        "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\n  eval_ratio: 0.2\n",
		"batch tokens":      "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\n  seq_len: 128\ntrain:\n  batch_tokens: 1000\n",
		"clipping off":      "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\ntrain:\n  clip_norm: 0\n  checkpoint_every: 0\n  eval_every: 0\n",
		"remote contestant": "name: d\nbase: m.gguf\ndata:\n  train: t.jsonl\neval:\n  contestants:\n    - name: api\n      kind: openai\n      model: x\n      base_url: http://127.0.0.1:1/v1\n      budget: 2m\n",
		"good":              good,
	}
	shipped, _ := filepath.Glob("*.yaml")
	if len(shipped) == 0 {
		t.Fatal("no shipped recipes found")
	}
	for _, p := range shipped {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		srcs[p] = string(b)
	}
	for name, src := range srcs {
		t.Run(name, func(t *testing.T) {
			first, err := Decode(filepath.Join(t.TempDir(), "r.yaml"), []byte(src), nil)
			if err != nil {
				t.Fatal(err)
			}
			y, err := first.YAML()
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "recipe.yaml")
			if err := os.WriteFile(p, y, 0o644); err != nil {
				t.Fatal(err)
			}
			second, err := Load(p, nil)
			if err != nil {
				t.Fatalf("the resolved recipe is not valid: %v\n%s", err, y)
			}
			// Every exported field, an empty list and none alike.
			y2, err := second.YAML()
			if err != nil {
				t.Fatal(err)
			}
			if string(y) != string(y2) {
				t.Fatalf("resolving the resolved recipe changes it:\n%s\n---\n%s", y, y2)
			}
		})
	}
}

// TestErrorsStayShortAndPlaced: a recipe that is not UTF-8 names the line
// and column of the first bad byte; a megabyte value is clipped in the one
// line that names it.
func TestErrorsStayShortAndPlaced(t *testing.T) {
	_, err := Decode("r.yaml", []byte("name: x\nbase: m.gguf\ndata:\n  train: caf\xe9.jsonl\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml:4: ") || !strings.Contains(err.Error(), "column 13") || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("a Latin-1 byte on line 4: %v", err)
	}
	long := strings.Repeat("a b", 2<<20)
	for _, src := range []string{
		"name: " + long + "\nbase: m.gguf\ndata: {train: t.jsonl}\n",
		"name: x\nbase: m.gguf\ndata: {train: t.jsonl, format: " + long + "}\n",
	} {
		_, err := Decode("r.yaml", []byte(src), nil)
		if err == nil || len(err.Error()) > 600 || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "bytes") {
			t.Fatalf("a 6 MB value: %d bytes of error: %.300s", len(fmt.Sprint(err)), err)
		}
	}
}
