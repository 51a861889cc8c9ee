package basemodel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storeWith lays out an Ollama model store holding one model.
func storeWith(t *testing.T, name string) (store, blob string) {
	store = t.TempDir()
	digest := "sha256:" + strings.Repeat("ab", 32)
	blob = filepath.Join(store, "blobs", "sha256-"+strings.Repeat("ab", 32))
	os.MkdirAll(filepath.Dir(blob), 0o755)
	os.WriteFile(blob, []byte("GGUF"), 0o644)
	host, ns, model, tag, err := splitName(name)
	if err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(store, "manifests", host, ns, model, tag)
	os.MkdirAll(filepath.Dir(man), 0o755)
	os.WriteFile(man, []byte(`{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:00"},{"mediaType":"application/vnd.ollama.image.model","digest":"`+digest+`"}]}`), 0o644)
	return store, blob
}

func TestOllamaStoreOnDisk(t *testing.T) {
	for _, name := range []string{"llama3.2:1b", "llama3.2", "myorg/tuned:v2"} {
		store, blob := storeWith(t, name)
		// A host where no server answers: the store on disk is read.
		got, err := Resolve(context.Background(), "ollama:"+name, ".", Options{OllamaHost: "127.0.0.1:1", OllamaModels: store})
		if err != nil {
			t.Fatal(err)
		}
		if got != blob {
			t.Fatalf("ollama:%s -> %s, want %s", name, got, blob)
		}
	}
	store, _ := storeWith(t, "llama3.2:1b")
	_, err := Resolve(context.Background(), "ollama:llama3.2:3b", ".", Options{OllamaHost: "127.0.0.1:1", OllamaModels: store})
	if err == nil || !strings.Contains(err.Error(), "ollama pull llama3.2:3b") {
		t.Fatalf("a model not pulled: %v", err)
	}
}

func TestFileAndBuiltin(t *testing.T) {
	dir := t.TempDir()
	if _, err := Resolve(context.Background(), "nope.gguf", dir, Options{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	p, err := Resolve(context.Background(), "builtin:tiny", dir, Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Size() < 1<<20 {
		t.Fatalf("builtin:tiny: %v %v", st, err)
	}
	if _, err := Resolve(context.Background(), "builtin:huge", dir, Options{CacheDir: dir}); err == nil {
		t.Fatal("unknown builtin accepted")
	}
}
