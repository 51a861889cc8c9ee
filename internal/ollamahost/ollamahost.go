// Package ollamahost holds what finetune's Ollama clients agree on: where
// the server is, and which GGUF a model's Modelfile says it is made FROM.
package ollamahost

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// URL is the URL of an Ollama server given as host: a URL, a bare
// host:port, or "" for $OLLAMA_HOST, else http://127.0.0.1:11434.
func URL(host string) (*url.URL, error) {
	if host == "" {
		host = os.Getenv("OLLAMA_HOST")
	}
	if host == "" {
		host = "http://127.0.0.1:11434"
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("Ollama host %q is not a URL (like http://127.0.0.1:11434)", host)
	}
	return u, nil
}

// FromPath is the file of the FROM line of a Modelfile as /api/show gives
// it (the model's GGUF blob, …/blobs/sha256-HEX), or "".
func FromPath(modelfile string) string {
	for _, line := range strings.Split(modelfile, "\n") {
		if rest, ok := strings.CutPrefix(line, "FROM "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
