package basemodel

import (
	"context"
	"testing"

	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
)

// TestOllamaServersOfEveryVersion: ollama:NAME resolves to the model's GGUF
// blob through the API (/api/show's Modelfile) and from the store on disk
// (the manifest's model layer) on the pinned 0.17.4 server and on 0.34.4,
// whose manifest layout and /api/show answer are the ones it relies on.
func TestOllamaServersOfEveryVersion(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	want, _, err := filehash.SHA256(model)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"", "v0.34.4"} {
		name := version
		if name == "" {
			name = "pinned"
		}
		t.Run(name, func(t *testing.T) {
			srv := ollamatest.Start(t, ollamatest.Options{Version: version})
			srv.Create(t, "team/stories:v1", model, "")
			for how, o := range map[string]Options{
				"api":   {OllamaHost: srv.URL.Host, OllamaModels: t.TempDir()},
				"store": {OllamaHost: "127.0.0.1:1", OllamaModels: srv.Models},
			} {
				p, err := Resolve(context.Background(), "ollama:team/stories:v1", ".", o)
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if got, _, _ := filehash.SHA256(p); got != want {
					t.Fatalf("%s: ollama:team/stories:v1 resolved to %s (sha256 %s), not the model created", how, p, got)
				}
			}
		})
	}
}
