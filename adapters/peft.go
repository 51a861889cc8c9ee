package adapters

// This file converts adapters between llama.cpp's GGUF format and Hugging
// Face PEFT's LoRA format (ExportPEFT, ImportPEFT); hfnames.go maps the
// names, safetensors.go reads and writes the weights and peft_config.go
// adapter_config.json.
//
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
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/modelinfo"
)

// The files of a PEFT adapter folder.
const (
	PEFTWeightsFile = "adapter_model.safetensors"
	PEFTConfigFile  = "adapter_config.json"
)

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
		w, ok := BaseWeight(base, p.Base)
		if !ok {
			return fmt.Errorf("%s: adapts %s, which the base model %s does not have (wrong base model?)", path, p.Base, base.Path)
		}
		if d := p.BaseDims(); len(w.Dims) != 2 || int(w.Dims[0]) != d[0] || int(w.Dims[1]) != d[1] {
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
		a, b := ".lora_A.weight", ".lora_B.weight"
		if p.Embedding() {
			a, b = ".lora_embedding_A", ".lora_embedding_B"
		}
		tensors = append(tensors,
			stTensor{name: peftPrefix + module + a, shape: []int{p.Rank, p.NIn}, data: p.A},
			stTensor{name: peftPrefix + module + b, shape: []int{p.NOut, p.Rank}, data: p.B})
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

// frozenEmbeddingCopy reports whether name is the copy of the base's own
// head or embedding that PEFT saves beside their LoRA ("...lm_head.
// base_layer.weight"; save_embedding_layers="auto" does so whenever they
// are targets, in case the vocabulary was resized). LoRA leaves them as
// they are; a resized vocabulary shows in the LoRA tensors' shapes, which
// are checked against the base.
func frozenEmbeddingCopy(name string) bool {
	m, ok := strings.CutSuffix(strings.TrimPrefix(name, peftPrefix), ".base_layer.weight")
	return ok && (m == "lm_head" || m == "model.embed_tokens")
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
		if frozenEmbeddingCopy(name) {
			continue
		}
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
