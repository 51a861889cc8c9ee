package evals

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
)

// cache keeps answers on disk, one small JSON file per answer, so an
// interrupted or repeated run asks nothing twice. An entry is keyed by the
// contestant's identity (kind, model digest, endpoint, adapters, settings)
// and the prompt; its file holds the answer, the usage, the latency and, for
// a person reading it, the contestant's name and model (never a key).
type cache struct{ dir string }

type cacheEntry struct {
	Contestant string  `json:"contestant"`
	Kind       string  `json:"kind"`
	Model      string  `json:"model"`
	Text       string  `json:"text"`
	Usage      Usage   `json:"usage"`
	LatencyMS  float64 `json:"latency_ms"`
	// FinishReason: "stop", "length", or absent when unknown (entries
	// written before it was kept read as unknown, not as "stop").
	FinishReason string    `json:"finish_reason,omitempty"`
	Created      time.Time `json:"created"`
}

// cacheKey is the entry's name: the contestant's identity and every field
// of the prompt a contestant may send.
func cacheKey(identity string, c *Case) string {
	h := sha256.New()
	b, _ := json.Marshal(struct {
		Identity string
		Prompt   []Message
		Rendered string
		Tokens   []int32
	}{identity, c.Prompt, c.RenderedPrompt, c.PromptTokens})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (c *cache) path(key string) string {
	return filepath.Join(c.dir, key[:2], key+".json")
}

func (c *cache) get(key string) (Answer, bool) {
	if c == nil {
		return Answer{}, false
	}
	b, err := os.ReadFile(c.path(key))
	if err != nil {
		return Answer{}, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil {
		return Answer{}, false // a damaged entry is asked again
	}
	return Answer{Text: e.Text, Usage: e.Usage, FinishReason: e.FinishReason, Latency: time.Duration(math.Round(e.LatencyMS * float64(time.Millisecond)))}, true
}

func (c *cache) put(key string, info Info, name string, a Answer) error {
	if c == nil {
		return nil
	}
	e := cacheEntry{Contestant: name, Kind: info.Kind, Model: info.Model, Text: a.Text, Usage: a.Usage,
		FinishReason: a.FinishReason, LatencyMS: float64(a.Latency) / float64(time.Millisecond), Created: time.Now().UTC()}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(c.path(key), b)
}
