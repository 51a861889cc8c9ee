package adapters

// This file holds the Hugging Face names of a Llama base model's weights
// and of PEFT's LoRA tensors, and the permutation of the q and k rows that
// llama.cpp's converter applies for RoPE.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/finetune-dev/finetune/internal/modelinfo"
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

const mappedModules = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj of model.layers.N, lm_head and model.embed_tokens"

// hfModule returns the Hugging Face module of a GGUF base weight:
// blk.3.attn_q.weight → model.layers.3.self_attn.q_proj,
// output.weight → lm_head.
func hfModule(weight string) (string, error) {
	switch weight {
	case "output.weight":
		return "lm_head", nil
	case EmbeddingWeight:
		return "model.embed_tokens", nil
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
	return "", fmt.Errorf("%s has no Hugging Face name that finetune knows (it maps attn_q/k/v/output and ffn_gate/up/down of blk.N, output.weight and token_embd.weight)", weight)
}

// ggufWeight returns the GGUF base weight of a Hugging Face module, the
// inverse of hfModule.
func ggufWeight(module string) (string, error) {
	switch module {
	case "lm_head":
		return "output.weight", nil
	case "model.embed_tokens":
		return EmbeddingWeight, nil
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

// splitPEFTName splits a PEFT tensor name,
// [base_model.model.]MODULE.lora_A[.ADAPTER].weight (or, for an embedding,
// MODULE.lora_embedding_A[.ADAPTER]), into the module and "A" or "B".
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
			if i > 0 && len(rest) <= 1 {
				return strings.Join(parts[:i], "."), p[len(p)-1:], nil
			}
		case "lora_magnitude_vector":
			return "", "", fmt.Errorf("tensor %s belongs to a DoRA adapter, which is not supported; train with use_dora false", name)
		}
	}
	return "", "", fmt.Errorf("tensor %s is not a LoRA lora_A or lora_B weight (finetune imports LoRA adapters without modules_to_save or trained biases)", name)
}
