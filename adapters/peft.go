package adapters

// Hugging Face PEFT's LoRA format: a folder holding adapter_config.json and
// adapter_model.safetensors, whose tensors are named after the adapted
// module, e.g.
//
//	base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight  [r, in_features]
//	base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight  [out_features, r]
//
// (torch shapes, row-major), applied as W·x + s·B·(A·x) with
// s = lora_alpha / r, or lora_alpha / √r with use_rslora, where rank_pattern
// and alpha_pattern may set r and lora_alpha per module.
//
// A GGUF Pair's A (ggml [NIn, Rank]) and B (ggml [Rank, NOut]) hold the same
// row-major values as torch's [r, in] and [out, r], with one exception:
// llama.cpp's convert_hf_to_gguf.py permutes the rows of the Llama q and k
// projections (see ggufRow), so W_gguf = P·W_hf and therefore
// B_gguf = P·B_hf while A is unchanged.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// The files of a PEFT adapter folder.
const (
	PEFTWeightsFile = "adapter_model.safetensors"
	PEFTConfigFile  = "adapter_config.json"
)

// peftPrefix is the prefix PEFT's PeftModel gives the base model's modules.
const peftPrefix = "base_model.model."

// blockModules pairs the GGUF names of a Llama block's weights with their
// Hugging Face modules.
var blockModules = [][2]string{
	{"attn_q", "self_attn.q_proj"},
	{"attn_k", "self_attn.k_proj"},
	{"attn_v", "self_attn.v_proj"},
	{"attn_output", "self_attn.o_proj"},
	{"ffn_gate", "mlp.gate_proj"},
	{"ffn_up", "mlp.up_proj"},
	{"ffn_down", "mlp.down_proj"},
}

const mappedModules = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj of model.layers.N, and lm_head"

// hfModule returns the Hugging Face module of a GGUF base weight:
// blk.3.attn_q.weight → model.layers.3.self_attn.q_proj,
// output.weight → lm_head.
func hfModule(weight string) (string, error) {
	if weight == "output.weight" {
		return "lm_head", nil
	}
	rest, isBlock := strings.CutPrefix(weight, "blk.")
	n, name, _ := strings.Cut(rest, ".")
	name, isWeight := strings.CutSuffix(name, ".weight")
	if _, err := strconv.ParseUint(n, 10, 31); err == nil && isBlock && isWeight {
		for _, m := range blockModules {
			if m[0] == name {
				return "model.layers." + n + "." + m[1], nil
			}
		}
	}
	return "", fmt.Errorf("%s has no Hugging Face name that finetune knows (it maps attn_q/k/v/output and ffn_gate/up/down of blk.N, and output.weight)", weight)
}

// ggufWeight returns the GGUF base weight of a Hugging Face module, the
// inverse of hfModule.
func ggufWeight(module string) (string, error) {
	if module == "lm_head" {
		return "output.weight", nil
	}
	if strings.HasSuffix(module, "embed_tokens") {
		return "", fmt.Errorf("adapts the embedding %s: embedding LoRA is not supported (llama.cpp adapts matrix multiplications only); train without embed_tokens in target_modules", module)
	}
	rest, isBlock := strings.CutPrefix(module, "model.layers.")
	n, name, _ := strings.Cut(rest, ".")
	if _, err := strconv.ParseUint(n, 10, 31); err == nil && isBlock {
		for _, m := range blockModules {
			if m[1] == name {
				return "blk." + n + "." + m[0] + ".weight", nil
			}
		}
	}
	return "", fmt.Errorf("adapts %s, which finetune cannot map to a llama.cpp tensor (it maps %s)", module, mappedModules)
}

// permutedHeads returns the number of heads into which llama.cpp's
// converter grouped the rows of a Llama base weight when it permuted them:
// head_count for attn_q, head_count_kv for attn_k, and 0 for weights it did
// not permute.
func permutedHeads(weight string, h modelinfo.Hyper) int {
	switch {
	case strings.HasSuffix(weight, ".attn_q.weight"):
		return h.Heads
	case strings.HasSuffix(weight, ".attn_k.weight"):
		return h.KVHeads
	}
	return 0
}

// ggufRow returns the row of a GGUF q or k weight of rows rows that holds
// row r of the Hugging Face weight. convert_hf_to_gguf.py's permute views
// the rows as [heads, 2, rows/heads/2] and swaps the last two axes, so the
// rotary pairs (i, i+d/2) of Hugging Face's rotate_half become llama.cpp's
// adjacent pairs (2i, 2i+1) within each head of d rows.
func ggufRow(r, rows, heads int) int {
	half := rows / heads / 2
	head, pair, i := r/(2*half), r/half%2, r%half
	return head*2*half + 2*i + pair
}

// permuteRows returns a copy of m, a row-major matrix of rows of cols
// values, with its rows moved from Hugging Face's order into llama.cpp's
// (toGGUF) or back.
func permuteRows(m []float32, cols, heads int, toGGUF bool) []float32 {
	rows := len(m) / cols
	out := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		g := ggufRow(r, rows, heads)
		src, dst := g, r
		if toGGUF {
			src, dst = r, g
		}
		copy(out[dst*cols:(dst+1)*cols], m[src*cols:(src+1)*cols])
	}
	return out
}

// permuteB moves the rows of p.B between Hugging Face's order and
// llama.cpp's when p adapts a q or k projection; path names the file in
// errors.
func permuteB(p *Pair, h modelinfo.Hyper, toGGUF bool, path string) error {
	heads := permutedHeads(p.Base, h)
	if heads == 0 {
		return nil
	}
	if p.NOut%(2*heads) != 0 {
		return fmt.Errorf("%s: %s has %d outputs, not a whole number of rotary pairs for %d heads (inconsistent base model?)", path, p.Base, p.NOut, heads)
	}
	p.B = permuteRows(p.B, p.Rank, heads, toGGUF)
	return nil
}

// openLlamaBase opens a base model and reads the hyper-parameters the name
// map and the q/k permutation need.
func openLlamaBase(path string) (*gguf.File, modelinfo.Hyper, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, modelinfo.Hyper{}, err
	}
	if a := f.Architecture(); a != "llama" {
		return nil, modelinfo.Hyper{}, fmt.Errorf("%s: architecture %q: PEFT export and import support Llama-architecture base models only", path, a)
	}
	h, err := modelinfo.ParseHyper(f)
	return f, h, err
}

// checkFits verifies that every pair of l adapts a 2-D weight of base with
// the pair's shape; path names the adapter in errors.
func checkFits(l *LoRA, base *gguf.File, path string) error {
	if l.Architecture != base.Architecture() {
		return fmt.Errorf("%s: adapter is for architecture %q but the base model %s is %q", path, l.Architecture, base.Path, base.Architecture())
	}
	for _, p := range l.Pairs {
		w, ok := base.Tensor(p.Base)
		if !ok && p.Base == "output.weight" {
			return fmt.Errorf("%s: adapts the output head (lm_head), but the base model %s ties it to the token embedding, which llama.cpp cannot adapt; train without lm_head", path, base.Path)
		}
		if !ok {
			return fmt.Errorf("%s: adapts %s, which the base model %s does not have (wrong base model?)", path, p.Base, base.Path)
		}
		if len(w.Dims) != 2 || int(w.Dims[0]) != p.NIn || int(w.Dims[1]) != p.NOut {
			return fmt.Errorf("%s: %s takes %d inputs and gives %d outputs in the adapter, but the base weight in %s has shape %v (wrong base model?)", path, p.Base, p.NIn, p.NOut, base.Path, w.Dims)
		}
	}
	return nil
}

// ExportOptions change what ExportPEFT writes.
type ExportOptions struct {
	// BaseModelName is written as adapter_config.json's
	// base_model_name_or_path, which PEFT loads the base model from
	// (default: the base's general.name, else its file name without
	// .gguf).
	BaseModelName string
}

// ExportPEFT writes the GGUF LoRA adapter at adapterPath, made for the
// Llama base model at basePath, as a Hugging Face PEFT adapter: outDir gets
// adapter_model.safetensors (F32 tensors named as Hugging Face names the
// base's modules, the rows of q and k lora_B put back in Hugging Face's
// order) and adapter_config.json. The PEFT adapter applies the same update
// as llama.cpp: lora_alpha is the GGUF's alpha, and rank_pattern gives the
// rank of modules whose rank differs from the most common one.
//
// outDir is made when missing. It must hold nothing but the two files,
// which are replaced: ExportPEFT refuses a folder that holds anything else,
// such as a Hugging Face model, so that an adapter never lands beside files
// a loader would mistake for part of it. Each file is written to a
// temporary file in outDir first and renamed into place once both are
// complete.
func ExportPEFT(adapterPath, basePath, outDir string, o ExportOptions) error {
	l, err := Read(adapterPath)
	if err != nil {
		return err
	}
	base, h, err := openLlamaBase(basePath)
	if err != nil {
		return err
	}
	if err := checkFits(l, base, adapterPath); err != nil {
		return err
	}
	var tensors []stTensor
	ranks := map[string]int{}
	for _, p := range l.Pairs {
		module, err := hfModule(p.Base)
		if err != nil {
			return fmt.Errorf("%s: %w", adapterPath, err)
		}
		if err := permuteB(&p, h, false, adapterPath); err != nil {
			return err
		}
		ranks[module] = p.Rank
		tensors = append(tensors,
			stTensor{name: peftPrefix + module + ".lora_A.weight", shape: []int{p.Rank, p.NIn}, data: p.A},
			stTensor{name: peftPrefix + module + ".lora_B.weight", shape: []int{p.NOut, p.Rank}, data: p.B})
	}
	name := o.BaseModelName
	if name == "" {
		name, _ = base.String("general.name")
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(basePath), ".gguf")
	}
	cfg, err := json.MarshalIndent(exportConfig(l.Alpha, ranks, name), "", "  ")
	if err != nil {
		return err
	}
	if err := prepareOutDir(outDir); err != nil {
		return err
	}
	return writeFiles(outDir, map[string][]byte{
		PEFTWeightsFile: encodeSafetensors(tensors),
		PEFTConfigFile:  append(cfg, '\n'),
	})
}

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

// prepareOutDir makes dir, or checks that it holds nothing but the files of
// a PEFT adapter.
func prepareOutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("%s: %w (give a new or empty folder)", dir, err)
	}
	for _, e := range entries {
		if n := e.Name(); n != PEFTWeightsFile && n != PEFTConfigFile {
			return fmt.Errorf("%s: holds %s, which is not part of a PEFT adapter: export into a new or empty folder (an earlier export's %s and %s are replaced)",
				dir, n, PEFTWeightsFile, PEFTConfigFile)
		}
	}
	return nil
}

// writeFiles writes each file to a temporary file in dir, syncs them all,
// then renames them into place, so that a failure leaves the folder as it
// was and a reader never sees a partly written file.
func writeFiles(dir string, files map[string][]byte) error {
	tmps := map[string]string{}
	defer func() {
		for _, tmp := range tmps {
			os.Remove(tmp)
		}
	}()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f, err := os.CreateTemp(dir, "."+name+".tmp-*")
		if err != nil {
			return err
		}
		tmps[name] = f.Name()
		_, err = f.Write(files[name])
		if err == nil {
			err = f.Chmod(0o644)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := os.Rename(tmps[name], filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
		}
		delete(tmps, name)
	}
	return nil
}

// stTensor is an F32 tensor to write to a safetensors file, with its torch
// shape.
type stTensor struct {
	name  string
	shape []int
	data  []float32
}

// encodeSafetensors returns a safetensors file holding tensors in name
// order: an 8-byte little-endian header length, the JSON header (each
// tensor's dtype, shape and data_offsets, relative to the data that follows
// it) padded with spaces to a multiple of 8 bytes, and the tensors' data.
func encodeSafetensors(tensors []stTensor) []byte {
	tensors = slices.Clone(tensors)
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].name < tensors[j].name })
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, t := range tensors {
		begin := len(data)
		data = append(data, gguf.F32Data(t.data)...)
		header[t.name] = map[string]any{"dtype": "F32", "shape": t.shape, "data_offsets": []int{begin, len(data)}}
	}
	h, _ := json.Marshal(header) // maps of strings, ints and slices always encode
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	return append(out, data...)
}

// stValue is a tensor read from a safetensors file, converted to float32.
type stValue struct {
	shape []int
	data  []float32
}

// stTypes are the safetensors dtypes ImportPEFT reads.
var stTypes = map[string]struct {
	t    ggml.Type
	size int
}{"F32": {ggml.TypeF32, 4}, "F16": {ggml.TypeF16, 2}, "BF16": {ggml.TypeBF16, 2}}

// readSafetensors reads every tensor of a safetensors file as float32.
func readSafetensors(path string) (map[string]stValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a safetensors file", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the file (%d bytes): not a safetensors file, or truncated", path, n, len(b))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		return nil, fmt.Errorf("%s: bad safetensors header: %v", path, err)
	}
	data := b[8+n:]
	out := map[string]stValue{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: bad header entry: %v", path, name, err)
		}
		st, ok := stTypes[e.Dtype]
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s is %s; finetune reads F32, F16 and BF16 (save the adapter unquantized)", path, name, e.Dtype)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || d > 0 && count > int64(len(data))/int64(d) {
				return nil, fmt.Errorf("%s: tensor %s has shape %v, which the file cannot hold (corrupt file?)", path, name, e.Shape)
			}
			count *= int64(d)
		}
		begin, end := e.Offsets[0], e.Offsets[1]
		if begin < 0 || end < begin || end > int64(len(data)) || end-begin != count*int64(st.size) {
			return nil, fmt.Errorf("%s: tensor %s: data_offsets %v do not hold a %s tensor of shape %v inside the %d data bytes (corrupt file?)", path, name, e.Offsets, e.Dtype, e.Shape, len(data))
		}
		v := stValue{shape: e.Shape, data: gguf.F32Values(data[begin:end])}
		if st.t != ggml.TypeF32 && count > 0 {
			if v.data, err = ggml.Decode(st.t, data[begin:end], int(count)); err != nil {
				return nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
			}
		}
		out[name] = v
	}
	return out, nil
}

// splitPEFTName splits a PEFT tensor name,
// [base_model.model.]MODULE.lora_A[.ADAPTER].weight, into the module and
// "A" or "B".
func splitPEFTName(name string) (module, ab string, err error) {
	parts := strings.Split(strings.TrimPrefix(name, peftPrefix), ".")
	for i, p := range parts {
		rest := parts[i+1:]
		switch p {
		case "lora_A", "lora_B":
			if i > 0 && len(rest) >= 1 && len(rest) <= 2 && rest[len(rest)-1] == "weight" {
				return strings.Join(parts[:i], "."), p[len(p)-1:], nil
			}
		case "lora_embedding_A", "lora_embedding_B":
			return "", "", fmt.Errorf("tensor %s is an embedding LoRA, which is not supported (llama.cpp adapts matrix multiplications only); train without embed_tokens in target_modules", name)
		case "lora_magnitude_vector":
			return "", "", fmt.Errorf("tensor %s belongs to a DoRA adapter, which is not supported; train with use_dora false", name)
		}
	}
	return "", "", fmt.Errorf("tensor %s is not a LoRA lora_A or lora_B weight (finetune imports LoRA adapters without modules_to_save or trained biases)", name)
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

// ImportPEFT converts the Hugging Face PEFT LoRA adapter in dir
// (adapter_config.json and adapter_model.safetensors with F32, F16 or BF16
// tensors) into a GGUF adapter at outPath for the Llama base model at
// basePath. Tensor names may lack the base_model.model. prefix and may
// carry the adapter's name (lora_A.default.weight). The rows of q and k
// lora_B are permuted into llama.cpp's order.
//
// llama.cpp scales every pair by alpha / r with one alpha per file, where
// PEFT's scale is lora_alpha / r (lora_alpha / √r with use_rslora), per
// module when rank_pattern or alpha_pattern are set. ImportPEFT takes the
// GGUF alpha that makes the scale exact for the most modules and folds each
// other module's difference into its B, so every module applies the update
// PEFT applies.
func ImportPEFT(dir, basePath, outPath string) error {
	cfgPath, weightsPath := filepath.Join(dir, PEFTConfigFile), filepath.Join(dir, PEFTWeightsFile)
	cfg, err := readPEFTConfig(cfgPath)
	if err != nil {
		return err
	}
	tensors, err := readSafetensors(weightsPath)
	if err != nil {
		return err
	}
	base, h, err := openLlamaBase(basePath)
	if err != nil {
		return err
	}
	pairs, err := peftPairs(tensors, cfg, weightsPath)
	if err != nil {
		return err
	}
	l := &LoRA{Architecture: base.Architecture()}
	want := map[string]float64{} // per base weight: PEFT's scale × rank, the alpha it needs
	for m, p := range pairs {
		want[p.Base] = cfg.scale(m) * float64(p.Rank)
		l.Pairs = append(l.Pairs, *p)
	}
	sort.Slice(l.Pairs, func(i, j int) bool { return l.Pairs[i].Base < l.Pairs[j].Base })
	if err := checkFits(l, base, weightsPath); err != nil {
		return err
	}
	l.Alpha = commonAlpha(want)
	for i := range l.Pairs {
		p := &l.Pairs[i]
		if float32(want[p.Base]) != l.Alpha {
			f := want[p.Base] / float64(l.Alpha)
			for j := range p.B {
				p.B[j] = float32(float64(p.B[j]) * f)
			}
		}
		if err := permuteB(p, h, true, weightsPath); err != nil {
			return err
		}
	}
	return Write(outPath, l)
}

// peftPairs groups the tensors of a PEFT adapter into pairs, by Hugging
// Face module, checking their shapes against each other and the config.
func peftPairs(tensors map[string]stValue, cfg *importConfig, path string) (map[string]*Pair, error) {
	if len(tensors) == 0 {
		return nil, fmt.Errorf("%s: holds no tensors", path)
	}
	type ab struct{ a, b string }
	names := map[string]*ab{}
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		module, which, err := splitPEFTName(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if names[module] == nil {
			names[module] = &ab{}
		}
		slot := &names[module].a
		if which == "B" {
			slot = &names[module].b
		}
		if *slot != "" {
			return nil, fmt.Errorf("%s: %s and %s both hold lora_%s of %s; keep one adapter per file", path, *slot, name, which, module)
		}
		*slot = name
	}
	pairs := map[string]*Pair{}
	for module, n := range names {
		if n.a == "" || n.b == "" {
			return nil, fmt.Errorf("%s: %s has only one of lora_A and lora_B (truncated or hand-edited file?)", path, module)
		}
		weight, err := ggufWeight(module)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		a, b := tensors[n.a], tensors[n.b]
		if len(a.shape) != 2 || len(b.shape) != 2 || a.shape[0] != b.shape[1] || a.shape[0] == 0 {
			return nil, fmt.Errorf("%s: %s has shape %v and %s %v; LoRA needs [r, in_features] and [out_features, r] with the same r > 0", path, n.a, a.shape, n.b, b.shape)
		}
		if r := cfg.rank(module); a.shape[0] != r {
			return nil, fmt.Errorf("%s: %s has rank %d but %s gives %s rank %d (config and weights from different adapters?)", path, n.a, a.shape[0], PEFTConfigFile, module, r)
		}
		pairs[module] = &Pair{Base: weight, NIn: a.shape[1], NOut: b.shape[0], Rank: a.shape[0], A: a.data, B: b.data}
	}
	return pairs, nil
}

// commonAlpha returns the alpha wanted by the most pairs (the smallest of
// equally common ones), as llama.cpp stores it.
func commonAlpha(want map[string]float64) float32 {
	count := map[float32]int{}
	for _, a := range want {
		count[float32(a)]++
	}
	var best float32
	for a, n := range count {
		if best == 0 || n > count[best] || n == count[best] && a < best {
			best = a
		}
	}
	return best
}
