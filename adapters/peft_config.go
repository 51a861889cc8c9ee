package adapters

// This file holds PEFT's adapter_config.json: the config ExportPEFT writes
// and the one ImportPEFT reads and checks, with its per-module rank and
// alpha patterns and the scale they give each module.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// peftConfig is the part of adapter_config.json that finetune writes.
type peftConfig struct {
	PeftType      string             `json:"peft_type"`
	TaskType      string             `json:"task_type"`
	BaseModel     string             `json:"base_model_name_or_path"`
	R             int                `json:"r"`
	LoraAlpha     json.Number        `json:"lora_alpha"`
	TargetModules []string           `json:"target_modules"`
	RankPattern   map[string]int     `json:"rank_pattern"`
	AlphaPattern  map[string]float64 `json:"alpha_pattern"`
	LoraDropout   float64            `json:"lora_dropout"`
	Bias          string             `json:"bias"`
	FanInFanOut   bool               `json:"fan_in_fan_out"`
	UseRSLoRA     bool               `json:"use_rslora"`
	UseDoRA       bool               `json:"use_dora"`
	InferenceMode bool               `json:"inference_mode"`
}

// exportConfig makes the config of an adapter with GGUF alpha alpha and the
// given rank per module. r is the most common rank (the smallest of equally
// common ones), and rank_pattern names the other modules. llama.cpp reads
// alpha 0 as "no scaling" (scale 1), which PEFT says as lora_alpha = r per
// module.
func exportConfig(alpha float32, ranks map[string]int, baseName string) peftConfig {
	count := map[int]int{}
	targets := map[string]bool{}
	for m, r := range ranks {
		count[r]++
		targets[m[strings.LastIndex(m, ".")+1:]] = true
	}
	common := 0
	for r, n := range count {
		if common == 0 || n > count[common] || n == count[common] && r < common {
			common = r
		}
	}
	c := peftConfig{
		PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseName,
		R: common, LoraAlpha: json.Number(strconv.FormatFloat(float64(alpha), 'g', -1, 32)),
		TargetModules: slices.Sorted(maps.Keys(targets)), RankPattern: map[string]int{}, AlphaPattern: map[string]float64{},
		Bias: "none", InferenceMode: true,
	}
	if alpha == 0 {
		c.LoraAlpha = json.Number(strconv.Itoa(common))
	}
	for m, r := range ranks {
		if r == common {
			continue
		}
		c.RankPattern[m] = r
		if alpha == 0 {
			c.AlphaPattern[m] = float64(r)
		}
	}
	return c
}

// importConfig is what ImportPEFT reads from adapter_config.json.
type importConfig struct {
	PeftType     string          `json:"peft_type"`
	R            *int            `json:"r"`
	LoraAlpha    *float64        `json:"lora_alpha"`
	UseRSLoRA    bool            `json:"use_rslora"`
	FanInFanOut  bool            `json:"fan_in_fan_out"`
	UseDoRA      bool            `json:"use_dora"`
	Bias         string          `json:"bias"`
	RankPattern  json.RawMessage `json:"rank_pattern"`
	AlphaPattern json.RawMessage `json:"alpha_pattern"`

	ranks, alphas []pattern
}

// pattern is one entry of rank_pattern or alpha_pattern: a regular
// expression for module names (matched as PEFT does, against the name's
// dot-separated tail) and its value.
type pattern struct {
	key   string
	re    *regexp.Regexp
	value float64
}

// readPEFTConfig reads and checks an adapter_config.json.
func readPEFTConfig(path string) (*importConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w (a PEFT adapter folder holds %s and %s)", err, PEFTConfigFile, PEFTWeightsFile)
	}
	var c importConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	switch {
	case c.PeftType != "" && c.PeftType != "LORA":
		return nil, fmt.Errorf("%s: peft_type is %q; finetune imports LORA adapters only", path, c.PeftType)
	case c.R == nil || *c.R <= 0:
		return nil, fmt.Errorf("%s: needs a positive r (the LoRA rank)", path)
	case c.LoraAlpha == nil || *c.LoraAlpha <= 0:
		return nil, fmt.Errorf("%s: needs a positive lora_alpha", path)
	case c.FanInFanOut:
		return nil, fmt.Errorf("%s: fan_in_fan_out is true, which PEFT uses for GPT-2-style Conv1D weights; a Llama adapter has it false", path)
	case c.UseDoRA:
		return nil, fmt.Errorf("%s: use_dora is true: DoRA adapters are not supported (llama.cpp applies plain LoRA)", path)
	case c.Bias != "" && c.Bias != "none":
		return nil, fmt.Errorf("%s: bias is %q: trained biases are not supported; train with bias \"none\"", path, c.Bias)
	}
	if c.ranks, err = readPatterns(c.RankPattern); err != nil {
		return nil, fmt.Errorf("%s: rank_pattern: %v", path, err)
	}
	if c.alphas, err = readPatterns(c.AlphaPattern); err != nil {
		return nil, fmt.Errorf("%s: alpha_pattern: %v", path, err)
	}
	for _, p := range append(slices.Clone(c.ranks), c.alphas...) {
		if p.value <= 0 {
			return nil, fmt.Errorf("%s: pattern %q has value %g; ranks and alphas must be positive", path, p.key, p.value)
		}
	}
	return &c, nil
}

// readPatterns reads a JSON object of numbers keeping its order, which
// decides which of several matching patterns applies.
func readPatterns(raw json.RawMessage) ([]pattern, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var ps []pattern
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // object keys are strings
		var v float64
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("%q: %v", key, err)
		}
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%q is not a regular expression finetune can read: %v", key, err)
		}
		ps = append(ps, pattern{key: key, re: re, value: v})
	}
	return ps, nil
}

// lookup returns the value of the first pattern that matches module, or
// def.
func lookup(ps []pattern, module string, def float64) float64 {
	for _, p := range ps {
		if p.re.MatchString(module) {
			return p.value
		}
	}
	return def
}

// rank returns the rank the config gives module.
func (c *importConfig) rank(module string) int {
	return int(lookup(c.ranks, module, float64(*c.R)))
}

// scale returns PEFT's scale of module, lora_alpha / r or, with rsLoRA,
// lora_alpha / √r.
func (c *importConfig) scale(module string) float64 {
	alpha, r := lookup(c.alphas, module, *c.LoraAlpha), float64(c.rank(module))
	if c.UseRSLoRA {
		return alpha / math.Sqrt(r)
	}
	return alpha / r
}
