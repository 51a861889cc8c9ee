package adapters

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/ollamatest"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/testmodel"
)

// gqaBase writes a random F32 Llama model with grouped-query attention:
// 4 query heads and 2 key/value heads of 16 rows, so the q and k
// permutations differ.
func gqaBase(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "base.gguf")
	if err := testmodel.Write(path, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 96, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return path
}

// gqaShapes are gqaBase's [n_in, n_out] per block weight.
var gqaShapes = map[string][2]int{
	"attn_q": {64, 64}, "attn_k": {64, 32}, "attn_v": {64, 32}, "attn_output": {64, 64},
	"ffn_gate": {64, 96}, "ffn_up": {64, 96}, "ffn_down": {96, 64},
}

// randomAdapter adapts every weight of gqaBase that PEFT names, with rank 4
// and rank 8 on ffn_down and the output head, pairs in name order.
func randomAdapter(rng *rand.Rand, alpha float32) *LoRA {
	l := &LoRA{Architecture: "llama", Alpha: alpha}
	for b := 0; b < 2; b++ {
		for w, s := range gqaShapes {
			r := 4
			if w == "ffn_down" {
				r = 8
			}
			l.Pairs = append(l.Pairs, randomPair(rng, fmt.Sprintf("blk.%d.%s.weight", b, w), s[0], s[1], r, 0.2))
		}
	}
	l.Pairs = append(l.Pairs, randomPair(rng, "output.weight", 64, 259, 8, 0.2), randomPair(rng, "token_embd.weight", 259, 64, 4, 0.2))
	sort.Slice(l.Pairs, func(i, j int) bool { return l.Pairs[i].Base < l.Pairs[j].Base })
	return l
}

func writeAdapter(t *testing.T, l *LoRA) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := Write(path, l); err != nil {
		t.Fatal(err)
	}
	return path
}

// roundTrip exports l to PEFT and imports it back; it returns the adapter
// read back and the PEFT folder.
func roundTrip(t *testing.T, l *LoRA, base string) (*LoRA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "peft")
	if err := ExportPEFT(writeAdapter(t, l), base, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back.gguf")
	if err := ImportPEFT(dir, base, back); err != nil {
		t.Fatal(err)
	}
	got, err := Read(back)
	if err != nil {
		t.Fatal(err)
	}
	return got, dir
}

// TestPEFTRoundTrip: GGUF → PEFT → GGUF gives back the adapter exactly,
// while the PEFT file holds the q and k lora_B rows in another order.
func TestPEFTRoundTrip(t *testing.T) {
	base := gqaBase(t)
	l := randomAdapter(rand.New(rand.NewPCG(1, 1)), 16)
	got, dir := roundTrip(t, l, base)
	if !reflect.DeepEqual(got, l) {
		for i := range l.Pairs {
			t.Logf("%s: max |Δ| A %g, B %g", l.Pairs[i].Base, maxDiff(got.Pairs[i].A, l.Pairs[i].A), maxDiff(got.Pairs[i].B, l.Pairs[i].B))
		}
		t.Fatalf("round trip differs (alpha %g, want %g)", got.Alpha, l.Alpha)
	}
	st := readST(t, filepath.Join(dir, PEFTWeightsFile))
	for _, p := range l.Pairs {
		m, _ := hfModule(p.Base)
		suffix := ".lora_B.weight"
		if p.Embedding() {
			suffix = ".lora_embedding_B" // as PEFT names an nn.Embedding's LoRA
		}
		b := st.f32(t, peftPrefix+m+suffix)
		permuted := strings.Contains(p.Base, "attn_q") || strings.Contains(p.Base, "attn_k")
		if reflect.DeepEqual(b, p.B) == permuted {
			t.Errorf("%s: PEFT lora_B equals the GGUF's: %v, want %v", p.Base, !permuted, permuted)
		}
	}
	t.Logf("%d pairs round-tripped exactly (max |Δ| 0)", len(l.Pairs))
}

// convertPermute is convert_hf_to_gguf.py's permute written out with
// numpy's index arithmetic: w.reshape(heads, 2, rows/heads/2, cols)
// .swapaxes(1, 2).reshape(rows, cols).
func convertPermute(w []float32, cols, heads int) []float32 {
	rows := len(w) / cols
	half := rows / heads / 2
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			for s := 0; s < 2; s++ { // out[h][i][s] = w[h][s][i]
				copy(out[((h*half+i)*2+s)*cols:][:cols], w[((h*2+s)*half+i)*cols:][:cols])
			}
		}
	}
	return out
}

// ropeNorm is llama.cpp's RoPE on one head: pairs (2i, 2i+1) turned by
// pos·10000^(-2i/d).
func ropeNorm(x []float64, pos int) []float64 {
	d, out := len(x), make([]float64, len(x))
	for i := 0; i < d/2; i++ {
		s, c := math.Sincos(float64(pos) * math.Pow(10000, -2*float64(i)/float64(d)))
		out[2*i], out[2*i+1] = x[2*i]*c-x[2*i+1]*s, x[2*i]*s+x[2*i+1]*c
	}
	return out
}

// ropeNeox is Hugging Face's RoPE, x·cos + rotate_half(x)·sin: pairs
// (i, i+d/2) turned by the same angles.
func ropeNeox(x []float64, pos int) []float64 {
	d, out := len(x), make([]float64, len(x))
	for i := 0; i < d/2; i++ {
		s, c := math.Sincos(float64(pos) * math.Pow(10000, -2*float64(i)/float64(d)))
		out[i], out[i+d/2] = x[i]*c-x[i+d/2]*s, x[i+d/2]*c+x[i]*s
	}
	return out
}

func matVec(w []float32, x []float64) []float64 {
	y := make([]float64, len(w)/len(x))
	for r := range y {
		for c, xc := range x {
			y[r] += float64(w[r*len(x)+c]) * xc
		}
	}
	return y
}

// scores are the attention scores of every query head at position 7 with
// its key head at position 3, after RoPE.
func scores(wq, wk []float32, x []float64, heads, kvHeads int, rope func([]float64, int) []float64) []float64 {
	q, k := matVec(wq, x), matVec(wk, x)
	d := len(q) / heads
	var out []float64
	for h := 0; h < heads; h++ {
		kh := h / (heads / kvHeads)
		qr, kr := rope(q[h*d:(h+1)*d], 7), rope(k[kh*d:(kh+1)*d], 3)
		s := 0.0
		for i := range qr {
			s += qr[i] * kr[i]
		}
		out = append(out, s)
	}
	return out
}

func maxDiff64(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func baseWeight(t *testing.T, f *gguf.File, name string) []float32 {
	t.Helper()
	data, err := f.ReadTensorData(name)
	if err != nil {
		t.Fatal(err)
	}
	return gguf.F32Values(data)
}

// TestPEFTPermutation checks the q/k row order independently of the export
// code path: with W_hf the un-permuted GGUF weight, Hugging Face's RoPE on
// W_hf·x gives the attention scores llama.cpp's RoPE gives on W_gguf·x;
// the converter's own permute takes W_hf back to W_gguf; and the exported
// lora_B merges into W_hf to what the GGUF lora_B merges into W_gguf.
func TestPEFTPermutation(t *testing.T) {
	basePath := gqaBase(t)
	base, err := gguf.Open(basePath)
	if err != nil {
		t.Fatal(err)
	}
	const heads, kvHeads, embd = 4, 2, 64
	wq, wk := baseWeight(t, base, "blk.0.attn_q.weight"), baseWeight(t, base, "blk.0.attn_k.weight")
	hq, hk := permuteRows(wq, embd, heads, false), permuteRows(wk, embd, kvHeads, false)

	t.Run("rope", func(t *testing.T) {
		if !reflect.DeepEqual(convertPermute(hq, embd, heads), wq) || !reflect.DeepEqual(convertPermute(hk, embd, kvHeads), wk) {
			t.Fatal("convert_hf_to_gguf's permute does not take the un-permuted weights back to the GGUF's")
		}
		rng := rand.New(rand.NewPCG(2, 2))
		x := make([]float64, embd)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		want := scores(wq, wk, x, heads, kvHeads, ropeNorm)
		got := scores(hq, hk, x, heads, kvHeads, ropeNeox)
		unpermuted := scores(wq, wk, x, heads, kvHeads, ropeNeox)
		d, dWrong := maxDiff64(got, want), maxDiff64(unpermuted, want)
		t.Logf("scores %.4f…: |HF RoPE on W_hf - llama RoPE on W_gguf| = %.1e; without the un-permutation %.2f", want[0], d, dWrong)
		if d > 1e-9 || dWrong < 1e-2 {
			t.Fatalf("HF and llama.cpp scores differ by %g (by %g without un-permuting)", d, dWrong)
		}
	})

	t.Run("merged", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 3))
		l := &LoRA{Architecture: "llama", Alpha: 8, Pairs: []Pair{
			randomPair(rng, "blk.0.attn_k.weight", embd, 32, 4, 0.5),
			randomPair(rng, "blk.0.attn_q.weight", embd, embd, 4, 0.5),
		}}
		dir := filepath.Join(t.TempDir(), "peft")
		if err := ExportPEFT(writeAdapter(t, l), basePath, dir, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		st := readST(t, filepath.Join(dir, PEFTWeightsFile))
		for i, c := range []struct {
			module string
			w, hf  []float32
			heads  int
		}{{"model.layers.0.self_attn.k_proj", wk, hk, kvHeads}, {"model.layers.0.self_attn.q_proj", wq, hq, heads}} {
			p := l.Pairs[i]
			a, b := st.f32(t, peftPrefix+c.module+".lora_A.weight"), st.f32(t, peftPrefix+c.module+".lora_B.weight")
			s := float64(l.Alpha) / float64(p.Rank)
			want := merge(c.w, p.B, p.A, s, embd)
			got := convertPermute(merge(c.hf, b, a, s, embd), embd, c.heads)
			d := maxDiff(got, want)
			t.Logf("%s: |permute(W_hf + s·B_hf·A) - (W_gguf + s·B_gguf·A)| = %.1e", c.module, d)
			if d > 1e-6 {
				t.Fatalf("%s: merged weights differ by %g", c.module, d)
			}
		}
	})
}

// merge returns w + s·b·a for a row-major w of rows of nIn, b [rows, r]
// and a [r, nIn].
func merge(w, b, a []float32, s float64, nIn int) []float32 {
	out := append([]float32(nil), w...)
	r := len(a) / nIn
	for o := 0; o < len(w)/nIn; o++ {
		for i := 0; i < nIn; i++ {
			sum := 0.0
			for k := 0; k < r; k++ {
				sum += float64(b[o*r+k]) * float64(a[k*nIn+i])
			}
			out[o*nIn+i] += float32(s * sum)
		}
	}
	return out
}

// stFile is a safetensors file as a minimal reader, written from the
// format's description, sees it.
type stFile struct {
	header map[string]json.RawMessage
	data   []byte
}

type stHeaderEntry struct {
	Dtype   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets []int  `json:"data_offsets"`
}

// readST parses a safetensors file and checks its layout: an 8-byte
// little-endian header length, a JSON header padded with spaces to a
// multiple of 8 bytes, F32 tensors stored in name order, back to back,
// filling the data exactly.
func readST(t *testing.T, path string) stFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint64(b))
	if n%8 != 0 || 8+n > len(b) {
		t.Fatalf("header length %d: not a multiple of 8, or past the end of %d bytes", n, len(b))
	}
	h := b[8 : 8+n]
	if trimmed := bytes.TrimRight(h, " "); !json.Valid(trimmed) || trimmed[len(trimmed)-1] != '}' {
		t.Fatalf("header is not a JSON object padded with spaces: %q", h)
	}
	f := stFile{data: b[8+n:]}
	if err := json.Unmarshal(h, &f.header); err != nil {
		t.Fatal(err)
	}
	var meta map[string]string
	if err := json.Unmarshal(f.header["__metadata__"], &meta); err != nil || meta["format"] != "pt" {
		t.Fatalf("__metadata__ %s", f.header["__metadata__"])
	}
	var names []string
	for name := range f.header {
		if name != "__metadata__" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	end := 0
	for _, name := range names {
		e := f.entry(t, name)
		size := 4
		for _, d := range e.Shape {
			size *= d
		}
		if e.Dtype != "F32" || len(e.Offsets) != 2 || e.Offsets[0] != end || e.Offsets[1]-e.Offsets[0] != size {
			t.Fatalf("%s: %+v: want F32 data at [%d, %d)", name, e, end, end+size)
		}
		end = e.Offsets[1]
	}
	if end != len(f.data) {
		t.Fatalf("tensors fill %d of %d data bytes", end, len(f.data))
	}
	return f
}

func (f stFile) entry(t *testing.T, name string) stHeaderEntry {
	t.Helper()
	var e stHeaderEntry
	if err := json.Unmarshal(f.header[name], &e); err != nil {
		t.Fatalf("%s: %v (%s)", name, err, f.header[name])
	}
	return e
}

func (f stFile) f32(t *testing.T, name string) []float32 {
	t.Helper()
	e := f.entry(t, name)
	v := make([]float32, (e.Offsets[1]-e.Offsets[0])/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(f.data[e.Offsets[0]+4*i:]))
	}
	return v
}

// TestPEFTFiles: the exported files are what PEFT (and Ollama) read:
// Hugging Face names and torch shapes, and a config with the fields PEFT
// needs, lora_alpha a JSON integer, rank_pattern for the other rank.
func TestPEFTFiles(t *testing.T) {
	base := gqaBase(t)
	l := randomAdapter(rand.New(rand.NewPCG(4, 4)), 16)
	dir := filepath.Join(t.TempDir(), "peft")
	adapter := writeAdapter(t, l)
	if err := ExportPEFT(adapter, base, dir, ExportOptions{BaseModelName: "meta-llama/Llama-3.2-1B"}); err != nil {
		t.Fatal(err)
	}
	st := readST(t, filepath.Join(dir, PEFTWeightsFile))
	if len(st.header) != 2*len(l.Pairs)+1 {
		t.Fatalf("%d header entries for %d pairs", len(st.header), len(l.Pairs))
	}
	for name, shape := range map[string][]int{
		"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight": {4, 64},
		"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight": {64, 4},
		"base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight": {32, 4},
		"base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight": {4, 64},
		"base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight":    {96, 4},
		"base_model.model.model.layers.1.mlp.up_proj.lora_A.weight":      {4, 64},
		"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight":    {8, 96},
		"base_model.model.lm_head.lora_A.weight":                         {8, 64},
		"base_model.model.lm_head.lora_B.weight":                         {259, 8},
		"base_model.model.model.embed_tokens.lora_embedding_A":           {4, 259},
		"base_model.model.model.embed_tokens.lora_embedding_B":           {64, 4},
	} {
		if got := st.entry(t, name).Shape; !reflect.DeepEqual(got, shape) {
			t.Errorf("%s: shape %v, want %v", name, got, shape)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, PEFTConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4.0, "lora_alpha": 16.0, "lora_dropout": 0.0, "bias": "none",
		"fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "inference_mode": true,
		"base_model_name_or_path": "meta-llama/Llama-3.2-1B",
		"target_modules":          []any{"down_proj", "embed_tokens", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"},
		"rank_pattern":            map[string]any{"lm_head": 8.0, "model.layers.0.mlp.down_proj": 8.0, "model.layers.1.mlp.down_proj": 8.0},
		"alpha_pattern":           map[string]any{},
	}
	for k, v := range want {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("adapter_config.json: %s is %#v, want %#v", k, cfg[k], v)
		}
	}
	// Ollama's converter reads lora_alpha into a uint32.
	var ollama struct {
		Alpha uint32 `json:"lora_alpha"`
	}
	if err := json.Unmarshal(raw, &ollama); err != nil || ollama.Alpha != 16 {
		t.Errorf("lora_alpha as Ollama reads it: %d, %v", ollama.Alpha, err)
	}

	// An earlier export is replaced; a folder holding anything else is refused.
	if err := ExportPEFT(adapter, base, dir, ExportOptions{}); err != nil {
		t.Fatalf("re-export: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("folder holds %d entries after re-export, want 2", len(entries))
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
	err = ExportPEFT(adapter, base, dir, ExportOptions{})
	wantErr(t, err, dir, "config.json", "new or empty folder")
}

// TestPEFTAlphaZero: llama.cpp applies alpha 0 as scale 1 whatever the
// rank, which the export says with lora_alpha = r and alpha_pattern.
func TestPEFTAlphaZero(t *testing.T) {
	base := gqaBase(t)
	l := randomAdapter(rand.New(rand.NewPCG(5, 5)), 0)
	got, _ := roundTrip(t, l, base)
	for i, p := range l.Pairs {
		d := maxDiff(effect(got, got.Pairs[i]), effect(l, p))
		if d > 1e-6 {
			t.Fatalf("%s: update differs by %g", p.Base, d)
		}
	}
	t.Logf("GGUF alpha 0 → PEFT → GGUF alpha %g, every update preserved", got.Alpha)
}

// effect is the update llama.cpp applies for p: s·B·A, with s = alpha / r
// (1 for alpha 0), row-major [NOut, NIn].
func effect(l *LoRA, p Pair) []float32 {
	s := 1.0
	if l.Alpha != 0 {
		s = float64(l.Alpha) / float64(p.Rank)
	}
	return merge(make([]float32, p.NIn*p.NOut), p.B, p.A, s, p.NIn)
}

// peftTensor is a tensor of a hand-made PEFT adapter, in torch's shape and
// Hugging Face's row order.
type peftTensor struct {
	name  string
	shape []int
	data  []float32
}

// writePEFT writes a PEFT adapter folder with the given config and
// tensors stored as dtype (F32, F16 or BF16; F16 and BF16 values must be
// exact in those types).
func writePEFT(t *testing.T, config, dtype string, tensors []peftTensor) string {
	t.Helper()
	dir := t.TempDir()
	header := map[string]any{}
	var data []byte
	for _, x := range tensors {
		var b []byte
		switch dtype {
		case "F32":
			b = gguf.F32Data(x.data)
		case "F16":
			var err error
			if b, err = ggml.Encode(ggml.TypeF16, x.data, len(x.data)); err != nil {
				t.Fatal(err)
			}
		case "BF16":
			for _, v := range x.data {
				b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(v)>>16))
			}
		default:
			b = make([]byte, len(x.data))
		}
		header[x.name] = map[string]any{"dtype": dtype, "shape": x.shape, "data_offsets": []int{len(data), len(data) + len(b)}}
		data = append(data, b...)
	}
	h, _ := json.Marshal(header)
	st := append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...)
	if err := os.WriteFile(filepath.Join(dir, PEFTWeightsFile), append(st, data...), 0o644); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, PEFTConfigFile), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exactRandom returns n values k/256, |k| < 256: exact in F16 and BF16.
func exactRandom(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.IntN(511)-255) / 256
	}
	return v
}

// hfPair is one module of a hand-made PEFT adapter: its weights and the
// scale PEFT applies to it.
type hfPair struct {
	module    string
	nIn, nOut int
	r         int
	scale     float64
	a, b      []float32
}

func (p hfPair) tensors(prefix, infix string) []peftTensor {
	return []peftTensor{
		{prefix + p.module + ".lora_A" + infix + ".weight", []int{p.r, p.nIn}, p.a},
		{prefix + p.module + ".lora_B" + infix + ".weight", []int{p.nOut, p.r}, p.b},
	}
}

// hfPairs makes random modules of gqaBase with the given ranks and PEFT
// scales.
func hfPairs(rng *rand.Rand, specs []hfPair) []hfPair {
	for i := range specs {
		w, _ := ggufWeight(specs[i].module)
		s := gqaShapes[strings.Split(w, ".")[2]]
		specs[i].nIn, specs[i].nOut = s[0], s[1]
		specs[i].a, specs[i].b = exactRandom(rng, specs[i].r*s[0]), exactRandom(rng, s[1]*specs[i].r)
	}
	return specs
}

// checkImported checks that the imported adapter applies, for every
// module, the update PEFT applies: scale·B_hf·A, rows of q and k permuted
// as convert_hf_to_gguf does.
func checkImported(t *testing.T, path string, pairs []hfPair) *LoRA {
	t.Helper()
	l, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Pairs) != len(pairs) {
		t.Fatalf("%d pairs imported, want %d", len(l.Pairs), len(pairs))
	}
	for _, hp := range pairs {
		w, _ := ggufWeight(hp.module)
		var p *Pair
		for i := range l.Pairs {
			if l.Pairs[i].Base == w {
				p = &l.Pairs[i]
			}
		}
		if p == nil {
			t.Fatalf("%s (%s) not imported", hp.module, w)
		}
		want := merge(make([]float32, hp.nIn*hp.nOut), hp.b, hp.a, hp.scale, hp.nIn)
		switch {
		case strings.Contains(w, "attn_q"):
			want = convertPermute(want, hp.nIn, 4)
		case strings.Contains(w, "attn_k"):
			want = convertPermute(want, hp.nIn, 2)
		}
		got := effect(l, *p)
		d := 0.0
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i]-want[i]))/(1e-3+math.Abs(float64(want[i]))))
		}
		if d > 1e-5 {
			t.Errorf("%s: update differs from PEFT's by relative %g", hp.module, d)
		}
	}
	return l
}

// TestImportPEFTDtypes: F16 and BF16 adapters, with names lacking the
// base_model.model. prefix or carrying the adapter name, import exactly.
func TestImportPEFTDtypes(t *testing.T) {
	base := gqaBase(t)
	const config = `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "down_proj"]}`
	for _, c := range []struct{ dtype, prefix, infix string }{
		{"F32", peftPrefix, ""}, {"F16", "", ""}, {"BF16", peftPrefix, ".default"},
	} {
		t.Run(c.dtype, func(t *testing.T) {
			pairs := hfPairs(rand.New(rand.NewPCG(6, 6)), []hfPair{
				{module: "model.layers.0.self_attn.q_proj", r: 4, scale: 2},
				{module: "model.layers.1.self_attn.k_proj", r: 4, scale: 2},
				{module: "model.layers.1.mlp.down_proj", r: 4, scale: 2},
			})
			var tensors []peftTensor
			for _, p := range pairs {
				tensors = append(tensors, p.tensors(c.prefix, c.infix)...)
			}
			out := filepath.Join(t.TempDir(), "a.gguf")
			if err := ImportPEFT(writePEFT(t, config, c.dtype, tensors), base, out); err != nil {
				t.Fatal(err)
			}
			l := checkImported(t, out, pairs)
			// Exact: the scale is alpha/r as in PEFT, so values are copied.
			for _, p := range l.Pairs {
				if p.Base == "blk.1.ffn_down.weight" && !reflect.DeepEqual(p.B, pairs[2].b) {
					t.Fatal("ffn_down lora_B is not copied exactly")
				}
			}
			if l.Alpha != 8 {
				t.Fatalf("alpha %g, want 8", l.Alpha)
			}
		})
	}
}

// TestImportPEFTScales: rank_pattern, alpha_pattern (first matching key
// wins, as in PEFT) and rsLoRA give per-module scales, which the import
// keeps by choosing the most common alpha and folding the rest into B.
func TestImportPEFTScales(t *testing.T) {
	base := gqaBase(t)
	for _, c := range []struct {
		name      string
		config    string
		pairs     []hfPair
		wantAlpha float32
	}{
		{"patterns", `{"r": 8, "lora_alpha": 16,
			"rank_pattern": {"layers.1.self_attn.k_proj": 4, "k_proj": 2},
			"alpha_pattern": {"model.layers.0.mlp.down_proj": 32, "o_proj": 4}}`,
			[]hfPair{
				{module: "model.layers.0.self_attn.q_proj", r: 8, scale: 2},
				{module: "model.layers.0.self_attn.k_proj", r: 2, scale: 8},
				{module: "model.layers.1.self_attn.k_proj", r: 4, scale: 4},
				{module: "model.layers.1.self_attn.v_proj", r: 8, scale: 2},
				{module: "model.layers.0.mlp.down_proj", r: 8, scale: 4},
				{module: "model.layers.1.self_attn.o_proj", r: 8, scale: 0.5},
			}, 16},
		{"rslora", `{"r": 4, "lora_alpha": 8, "use_rslora": true, "rank_pattern": {"v_proj": 16}}`,
			[]hfPair{
				{module: "model.layers.0.self_attn.q_proj", r: 4, scale: 4},
				{module: "model.layers.1.self_attn.k_proj", r: 4, scale: 4},
				{module: "model.layers.1.self_attn.v_proj", r: 16, scale: 2},
			}, 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			pairs := hfPairs(rand.New(rand.NewPCG(7, 7)), c.pairs)
			var tensors []peftTensor
			for _, p := range pairs {
				tensors = append(tensors, p.tensors(peftPrefix, "")...)
			}
			out := filepath.Join(t.TempDir(), "a.gguf")
			if err := ImportPEFT(writePEFT(t, c.config, "F32", tensors), base, out); err != nil {
				t.Fatal(err)
			}
			if l := checkImported(t, out, pairs); l.Alpha != c.wantAlpha {
				t.Fatalf("alpha %g, want %g", l.Alpha, c.wantAlpha)
			}
		})
	}
}

func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
}

// TestImportPEFTErrors: what finetune cannot import is refused, naming the
// file and tensor and saying what to do.
func TestImportPEFTErrors(t *testing.T) {
	base := gqaBase(t)
	rng := rand.New(rand.NewPCG(8, 8))
	q := hfPairs(rng, []hfPair{{module: "model.layers.0.self_attn.q_proj", r: 4}})[0]
	good := q.tensors(peftPrefix, "")
	const config = `{"r": 4, "lora_alpha": 8}`
	for _, c := range []struct {
		name    string
		config  string
		dtype   string
		tensors []peftTensor
		want    []string
	}{
		{"missing config", "", "F32", good, []string{PEFTConfigFile, "no such file", "PEFT adapter folder"}},
		{"fan_in_fan_out", `{"r": 4, "lora_alpha": 8, "fan_in_fan_out": true}`, "F32", good, []string{PEFTConfigFile, "fan_in_fan_out"}},
		{"dora", `{"r": 4, "lora_alpha": 8, "use_dora": true}`, "F32", good, []string{PEFTConfigFile, "DoRA", "not supported"}},
		{"no rank", `{"lora_alpha": 8}`, "F32", good, []string{PEFTConfigFile, "positive r"}},
		{"bad pattern", `{"r": 4, "lora_alpha": 8, "rank_pattern": {"(q_proj": 2}}`, "F32", good, []string{"rank_pattern", "(q_proj"}},
		{"embedding without B", config, "F32", append(good, peftTensor{"base_model.model.model.embed_tokens.lora_embedding_A", []int{4, 259}, make([]float32, 4*259)}),
			[]string{PEFTWeightsFile, "model.embed_tokens", "only one of lora_A and lora_B"}},
		{"shape mismatch", config, "F32", []peftTensor{
			{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", []int{4, 48}, make([]float32, 4*48)},
			{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", []int{64, 4}, make([]float32, 4*64)}},
			[]string{PEFTWeightsFile, "blk.0.attn_q.weight", "48 inputs", "wrong base model"}},
		{"layer the base lacks", config, "F32", []peftTensor{
			{"model.layers.7.mlp.up_proj.lora_A.weight", []int{4, 64}, make([]float32, 4*64)},
			{"model.layers.7.mlp.up_proj.lora_B.weight", []int{96, 4}, make([]float32, 4*96)}},
			[]string{PEFTWeightsFile, "blk.7.ffn_up.weight", "wrong base model"}},
		{"unknown module", config, "F32", []peftTensor{
			{"base_model.model.model.layers.0.self_attn.rotary_emb.lora_A.weight", []int{4, 64}, make([]float32, 4*64)},
			{"base_model.model.model.layers.0.self_attn.rotary_emb.lora_B.weight", []int{64, 4}, make([]float32, 4*64)}},
			[]string{PEFTWeightsFile, "model.layers.0.self_attn.rotary_emb", "cannot map", "q_proj"}},
		{"rank differs from config", `{"r": 8, "lora_alpha": 8}`, "F32", good, []string{PEFTWeightsFile, "rank 4", "rank 8", PEFTConfigFile}},
		{"modules_to_save", config, "F32", append(good, peftTensor{"base_model.model.lm_head.modules_to_save.default.weight", []int{259, 64}, make([]float32, 259*64)}),
			[]string{PEFTWeightsFile, "lm_head.modules_to_save.default.weight", "not a LoRA"}},
		{"only lora_A", config, "F32", good[:1], []string{PEFTWeightsFile, "model.layers.0.self_attn.q_proj", "only one of lora_A and lora_B"}},
		{"quantized", config, "I8", good, []string{PEFTWeightsFile, "I8", "F32, F16 and BF16"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writePEFT(t, c.config, c.dtype, c.tensors)
			err := ImportPEFT(dir, base, filepath.Join(t.TempDir(), "a.gguf"))
			wantErr(t, err, c.want...)
			t.Log(err)
		})
	}
	t.Run("truncated", func(t *testing.T) {
		dir := writePEFT(t, config, "F32", good)
		os.WriteFile(filepath.Join(dir, PEFTWeightsFile), []byte{0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'}, 0o644)
		wantErr(t, ImportPEFT(dir, base, filepath.Join(t.TempDir(), "a.gguf")), PEFTWeightsFile, "past the end")
	})
}

// TestExportPEFTErrors: adapters PEFT cannot name, or made for another
// base, are refused.
func TestExportPEFTErrors(t *testing.T) {
	base := gqaBase(t)
	rng := rand.New(rand.NewPCG(9, 9))
	norm := writeAdapter(t, &LoRA{Architecture: "llama", Alpha: 8, Pairs: []Pair{randomPair(rng, "output_norm.weight", 1, 64, 4, 0.1)}})
	wantErr(t, ExportPEFT(norm, base, filepath.Join(t.TempDir(), "p"), ExportOptions{}), norm, "output_norm.weight")
	deep := writeAdapter(t, &LoRA{Architecture: "llama", Alpha: 8, Pairs: []Pair{randomPair(rng, "blk.5.attn_v.weight", 64, 32, 4, 0.1)}})
	wantErr(t, ExportPEFT(deep, base, filepath.Join(t.TempDir(), "p"), ExportOptions{}), deep, "blk.5.attn_v.weight", "wrong base model")
	tied := filepath.Join(t.TempDir(), "tied.gguf")
	if err := testmodel.Write(tied, testmodel.Config{Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 96, TiedOutput: true}); err != nil {
		t.Fatal(err)
	}
	head := writeAdapter(t, &LoRA{Architecture: "llama", Alpha: 8, Pairs: []Pair{randomPair(rng, "output.weight", 64, 259, 4, 0.1)}})
	// lm_head's LoRA on a tied base is PEFT's own case: exported as it is.
	if err := ExportPEFT(head, tied, filepath.Join(t.TempDir(), "p"), ExportOptions{}); err != nil {
		t.Fatalf("lm_head LoRA on a tied base: %v", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	wantErr(t, ExportPEFT(writeAdapter(t, randomAdapter(rng, 8)), base, notDir, ExportOptions{}), notDir, "new or empty folder")
}

// f16Adapter is a random adapter on stories260K's blocks for the given
// weights, B divided by div, with values exact in F16 (Ollama's converter
// stores PEFT tensors as F16).
func f16Adapter(rng *rand.Rand, div float32, weights ...string) *LoRA {
	shapes := map[string][2]int{"attn_q": {64, 64}, "attn_k": {64, 32}, "attn_v": {64, 32}, "attn_output": {64, 64},
		"ffn_gate": {64, 172}, "ffn_up": {64, 172}, "ffn_down": {172, 64}}
	l := &LoRA{Architecture: "llama", Alpha: 8}
	for b := 0; b < 5; b++ {
		for _, w := range weights {
			s := shapes[w]
			p := Pair{Base: fmt.Sprintf("blk.%d.%s.weight", b, w), NIn: s[0], NOut: s[1], Rank: 4, A: exactRandom(rng, 4*s[0]), B: exactRandom(rng, 4*s[1])}
			for i := range p.B {
				p.B[i] /= div
			}
			l.Pairs = append(l.Pairs, p)
		}
	}
	sort.Slice(l.Pairs, func(i, j int) bool { return l.Pairs[i].Base < l.Pairs[j].Base })
	return l
}

// uploadBlob uploads a file to the server and returns its digest.
func uploadBlob(t *testing.T, srv *ollamatest.Server, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	if err := srv.Client.CreateBlob(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("uploading %s: %v", path, err)
	}
	return d
}

// createFromPEFT creates a model from a GGUF base and a PEFT adapter
// folder, which Ollama converts with its own safetensors adapter code.
func createFromPEFT(t *testing.T, srv *ollamatest.Server, name, base, dir string) {
	t.Helper()
	stream := false
	req := &api.CreateRequest{Model: name, Stream: &stream, Template: "{{ .Prompt }}",
		Files: map[string]string{filepath.Base(base): uploadBlob(t, srv, base)},
		Adapters: map[string]string{
			PEFTWeightsFile: uploadBlob(t, srv, filepath.Join(dir, PEFTWeightsFile)),
			PEFTConfigFile:  uploadBlob(t, srv, filepath.Join(dir, PEFTConfigFile)),
		}}
	if err := srv.Client.Create(context.Background(), req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("creating %s from the PEFT adapter: %v", name, err)
	}
}

// greedy returns a model's greedy continuation of a prompt and the log
// probability of each token it chose.
func greedy(t *testing.T, srv *ollamatest.Server, model string) (string, []float64) {
	t.Helper()
	stream := false
	req := &api.GenerateRequest{Model: model, Prompt: "Once upon a time", Stream: &stream, Logprobs: true,
		Options: map[string]any{"temperature": 0, "repeat_penalty": 1, "num_thread": 1, "num_predict": 32, "seed": 1}}
	var text string
	var lps []float64
	err := srv.Client.Generate(context.Background(), req, func(r api.GenerateResponse) error {
		text += r.Response
		for _, lp := range r.Logprobs {
			lps = append(lps, lp.Logprob)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("generating with %s: %v", model, err)
	}
	return text, lps
}

// ollamaAdapter returns the GGUF adapter Ollama made for a model, as
// float32 tensors by name, and its alpha.
func ollamaAdapter(t *testing.T, srv *ollamatest.Server, model string) (map[string][]float32, float64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.Models, "manifests", "registry.ollama.ai", "library", model, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ MediaType, Digest string }
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.ollama.image.adapter" {
			continue
		}
		f, err := gguf.Open(filepath.Join(srv.Models, "blobs", strings.Replace(l.Digest, ":", "-", 1)))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float32{}
		for _, ti := range f.Tensors {
			data, err := f.ReadTensorData(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			if out[ti.Name], err = ggml.Decode(ggml.Type(ti.Type), data, int(ti.Dims[0])); err != nil {
				t.Fatal(err)
			}
		}
		alpha, _ := f.Float("adapter.lora.alpha")
		return out, alpha
	}
	t.Fatalf("%s has no adapter layer", model)
	return nil, 0
}

// TestPEFTOllama hands exported PEFT adapters to a real Ollama server,
// whose own converter turns them into GGUF adapters, and compares the
// model's greedy answer with the same adapter given as GGUF. On v, o and
// the feed-forward weights the two must agree. On q and k, Ollama's
// converter permutes lora_A where PEFT's layout needs lora_B permuted (and
// takes head_count_kv from a key PEFT does not write): that is measured
// and logged, not asserted.
func TestPEFTOllama(t *testing.T) {
	base := shared.Path(t, "models/stories260K.gguf")
	srv := ollamatest.Start(t, ollamatest.Options{})
	srv.Create(t, "plain", base, "")
	plain, _ := greedy(t, srv, "plain")
	rng := rand.New(rand.NewPCG(10, 10))
	// B is scaled so that the adapter changes the story but leaves it a story.
	for _, c := range []struct {
		name    string
		div     float32
		weights []string
		assert  bool
	}{
		{"v-o-ffn", 64, []string{"attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}, true},
		{"q-k", 32, []string{"attn_q", "attn_k"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := f16Adapter(rng, c.div, c.weights...)
			adapter := writeAdapter(t, l)
			dir := filepath.Join(t.TempDir(), "peft")
			if err := ExportPEFT(adapter, base, dir, ExportOptions{}); err != nil {
				t.Fatal(err)
			}
			srv.Create(t, "gguf-"+c.name, base, adapter)
			createFromPEFT(t, srv, "peft-"+c.name, base, dir)
			// What Ollama's converter made of the PEFT files, against the GGUF.
			conv, alpha := ollamaAdapter(t, srv, "peft-"+c.name)
			dA, dB := map[string]float64{}, map[string]float64{}
			for _, p := range l.Pairs {
				kind := strings.Split(p.Base, ".")[2]
				dA[kind] = math.Max(dA[kind], maxDiff(conv[p.Base+".lora_a"], p.A))
				dB[kind] = math.Max(dB[kind], maxDiff(conv[p.Base+".lora_b"], p.B))
				if len(conv[p.Base+".lora_a"]) != len(p.A) || len(conv[p.Base+".lora_b"]) != len(p.B) {
					t.Fatalf("%s: Ollama made lora_a of %d values and lora_b of %d, want %d and %d", p.Base, len(conv[p.Base+".lora_a"]), len(conv[p.Base+".lora_b"]), len(p.A), len(p.B))
				}
			}
			t.Logf("Ollama's conversion: alpha %g (GGUF %g); max |Δ| against the GGUF adapter: lora_a %v, lora_b %v", alpha, l.Alpha, dA, dB)
			if c.assert {
				for k := range dA {
					if dA[k] != 0 || dB[k] != 0 || alpha != float64(l.Alpha) {
						t.Errorf("%s: Ollama's tensors differ from the GGUF adapter's", k)
					}
				}
			}
			want, wantLP := greedy(t, srv, "gguf-"+c.name)
			got, gotLP := greedy(t, srv, "peft-"+c.name)
			same := 0
			for same < min(len(got), len(want)) && got[same] == want[same] {
				same++
			}
			d := 0.0
			for i := range min(len(gotLP), len(wantLP)) {
				d = math.Max(d, math.Abs(gotLP[i]-wantLP[i]))
			}
			t.Logf("base alone:     %q", plain)
			t.Logf("GGUF adapter:   %q", want)
			t.Logf("PEFT adapter:   %q", got)
			t.Logf("%s: answers equal %v (first %d of %d bytes agree); max |Δ logprob| of chosen tokens %.2e over %d tokens",
				c.name, got == want, same, len(want), d, min(len(gotLP), len(wantLP)))
			if want == plain {
				t.Fatalf("the adapter does not change the answer: the comparison would prove nothing")
			}
			if c.assert && got != want {
				t.Fatalf("Ollama's answer with the PEFT adapter differs from the GGUF adapter's")
			}
		})
	}
}
