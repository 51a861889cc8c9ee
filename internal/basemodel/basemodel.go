// Package basemodel turns a recipe's base model reference into a GGUF file:
// a path, "ollama:NAME[:TAG]" for a model already pulled into a local
// Ollama (through its API when a server answers, else from its model store
// on disk), "builtin:NAME" for a small model finetune writes itself, or
// "catalog:NAME" for a pretrained model of finetune's catalog (Catalog):
// from a shared/models/ folder when there is one (dev and CI machines),
// else from the copy "finetune models fetch NAME" downloaded into the
// cache (Fetch). Resolving never downloads anything.
package basemodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/internal/ollamahost"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

//go:generate go run ./mkwords

// Builtins are the models finetune can write on the spot. "tiny" is a
// 3-layer Llama (hidden size 128, 4 heads / 2 KV heads, feed-forward 384,
// F32, 1.68M parameters) with random weights and a ChatML chat template.
// Its 4262-token vocabulary is the byte vocabulary (the 256 bytes, <s>,
// </s>, <unk>), the ChatML tokens <|im_start|> and <|im_end|>, "▁", and
// 4000 word tokens: the 1172 most frequent words of the shipped recipes'
// training data with their prefixes (mkwords writes the list), as a
// tokenizer trained on the domain would have them. A known word is one
// token, a snake_case label too, and other text falls back to bytes, so a
// conversation is about a third as many tokens as bytes. Small enough to
// train and evaluate in minutes on 2 cores, and honest about what it is:
// it knows nothing before tuning.
var Builtins = map[string]testmodel.Config{
	"tiny": {Layers: 3, Embd: 128, Heads: 4, KVHeads: 2, FF: 384, Context: 2048, Type: "f32", ChatML: true, Words: tinyWords, Seed: 20251126},
}

// builtinVersion changes whenever testmodel writes a builtin differently
// for the same configuration (v2: the ChatML vocabulary's "▁" token; v3:
// word tokens).
const builtinVersion = 3

// Options say where to look.
type Options struct {
	// OllamaHost is the Ollama server (default $OLLAMA_HOST, else
	// 127.0.0.1:11434).
	OllamaHost string
	// OllamaModels is Ollama's model store (default $OLLAMA_MODELS, else
	// ~/.ollama/models).
	OllamaModels string
	// CacheDir holds builtin models and fetched catalog models (default:
	// finetune/builtin and finetune/models in the user cache folder,
	// ~/.cache on Linux).
	CacheDir string
}

// Resolve returns the GGUF file of a base model reference; relative paths
// start at dir, and a catalog model's shared/ folder is looked for above
// dir as well as above the current folder (see CatalogEntry.Locate).
func Resolve(ctx context.Context, ref, dir string, o Options) (string, error) {
	switch {
	case strings.HasPrefix(ref, "ollama:"):
		return resolveOllama(ctx, strings.TrimPrefix(ref, "ollama:"), o)
	case strings.HasPrefix(ref, "builtin:"):
		return resolveBuiltin(strings.TrimPrefix(ref, "builtin:"), o)
	case strings.HasPrefix(ref, "catalog:"):
		return resolveCatalog(strings.TrimPrefix(ref, "catalog:"), dir, o)
	}
	p := ref
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("base model %s: no such file", p)
	}
	return p, nil
}

func resolveBuiltin(name string, o Options) (string, error) {
	cfg, ok := Builtins[name]
	if !ok {
		return "", fmt.Errorf("base builtin:%s: unknown builtin model (finetune has builtin:tiny)", name)
	}
	dir := o.CacheDir
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			c = os.TempDir()
		}
		dir = filepath.Join(c, "finetune", "builtin")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// The file name carries a hash of the configuration, so a changed
	// builtin is never served from an old file.
	p := filepath.Join(dir, fmt.Sprintf("%s-%08x.gguf", name, crc32.ChecksumIEEE([]byte(fmt.Sprintf("v%d %+v", builtinVersion, cfg)))))
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := testmodel.Write(p, cfg); err != nil {
		return "", fmt.Errorf("writing builtin:%s: %w", name, err)
	}
	return p, nil
}

// splitName parses NAME[:TAG] into Ollama's registry path parts.
func splitName(name string) (host, namespace, model, tag string, err error) {
	host, namespace, tag = "registry.ollama.ai", "library", "latest"
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	parts := strings.Split(name, "/")
	switch len(parts) {
	case 1:
		model = parts[0]
	case 2:
		namespace, model = parts[0], parts[1]
	case 3:
		host, namespace, model = parts[0], parts[1], parts[2]
	default:
		return "", "", "", "", fmt.Errorf("%q is not an Ollama model name", name)
	}
	if model == "" || tag == "" {
		return "", "", "", "", fmt.Errorf("%q is not an Ollama model name", name)
	}
	return host, namespace, model, tag, nil
}

func resolveOllama(ctx context.Context, name string, o Options) (string, error) {
	if p, err := fromServer(ctx, name, o); err == nil {
		return p, nil
	}
	return fromStore(name, o)
}

// fromServer asks a running Ollama for the model's GGUF blob (the FROM line
// of its Modelfile), for servers on this machine.
func fromServer(ctx context.Context, name string, o Options) (string, error) {
	u, err := ollamahost.URL(o.OllamaHost)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body := strings.NewReader(fmt.Sprintf(`{"model":%q}`, name))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("/api/show").String(), body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ollama: %s", resp.Status)
	}
	var show struct {
		Modelfile string `json:"modelfile"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&show); err != nil {
		return "", err
	}
	if p := ollamahost.FromPath(show.Modelfile); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("ollama: the model's GGUF is not on this machine")
}

// fromStore reads the model's manifest in Ollama's store on disk.
func fromStore(name string, o Options) (string, error) {
	store := o.OllamaModels
	if store == "" {
		store = os.Getenv("OLLAMA_MODELS")
	}
	if store == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		store = filepath.Join(home, ".ollama", "models")
	}
	host, ns, model, tag, err := splitName(name)
	if err != nil {
		return "", fmt.Errorf("base ollama:%s: %w", name, err)
	}
	manifest := filepath.Join(store, "manifests", host, ns, model, tag)
	b, err := os.ReadFile(manifest)
	if err != nil {
		return "", fmt.Errorf("base ollama:%s: not pulled into the local Ollama (no server answered and %s does not exist); run `ollama pull %s`", name, manifest, name)
	}
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("%s: not an Ollama manifest: %v", manifest, err)
	}
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.ollama.image.model" {
			continue
		}
		blob := filepath.Join(store, "blobs", strings.Replace(l.Digest, ":", "-", 1))
		if _, err := os.Stat(blob); err != nil {
			return "", fmt.Errorf("base ollama:%s: blob %s is missing from the store", name, blob)
		}
		return blob, nil
	}
	return "", fmt.Errorf("base ollama:%s: the manifest %s has no model layer", name, manifest)
}
