package llama

import (
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestGreedyPickMatchesChain: the greedy pick Sample makes in Go, with
// and without choices (the grammar asked about the one token, the chain
// run when it refuses), gives exactly the token llama.cpp's sampler chain
// gives from the same logits, step after step of a constrained generation
// (two samplers in lockstep, so their grammars see the same tokens), on
// stories260K and SmolLM2 (a 49,152-token vocabulary, its chat template).
func TestGreedyPickMatchesChain(t *testing.T) {
	for _, tc := range []struct {
		model, prompt string
		choices       []string
	}{
		{"models/stories260K.gguf", "Once upon a time", []string{"card_lost", "Lily", "there was", ", there was a dog"}},
		{"models/SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_start|>user\nIs the sky blue? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n", []string{"yes", "no", "Yes, it is", "refund_request"}},
	} {
		m := loadModel(t, shared.Path(t, tc.model))
		// Twice with choices: the second time the allowed tokens come
		// from the model's cache.
		for _, choices := range [][]string{nil, tc.choices, tc.choices} {
			toks, err := m.Tokenize(tc.prompt, true, true)
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := NewContext(m, ContextOptions{Context: len(toks) + 32, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			fast, err := NewSampler(m, SampleOptions{Choices: choices})
			if err != nil {
				t.Fatal(err)
			}
			chain, err := NewSampler(m, SampleOptions{Choices: choices})
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]BatchToken, len(toks))
			for i, tok := range toks {
				batch[i] = BatchToken{Token: tok, Pos: i, Logits: i == len(toks)-1}
			}
			if err := ctx.Decode(batch); err != nil {
				t.Fatal(err)
			}
			last, pos := len(toks)-1, len(toks)
			var got []Token
			var tFast, tChain time.Duration
			for step := 0; step < 20; step++ {
				st := time.Now()
				a := fast.Sample(ctx, last)
				tFast += time.Since(st)
				st = time.Now()
				b := chain.sampleChain(ctx, last)
				tChain += time.Since(st)
				if a != b {
					t.Fatalf("%s, choices %q, step %d: Sample picked %d (%q), the chain %d (%q)", tc.model, choices, step, a, m.Piece(a, true), b, m.Piece(b, true))
				}
				got = append(got, a)
				if m.IsEndOfGeneration(a) {
					break
				}
				if err := ctx.Decode([]BatchToken{{Token: a, Pos: pos, Logits: true}}); err != nil {
					t.Fatal(err)
				}
				last, pos = 0, pos+1
			}
			t.Logf("%s, choices %q: %q; %d picks in %v in Go, %v through the chain", tc.model, choices, m.Detokenize(got, false, false), len(got), tFast, tChain)
			if len(choices) > 0 && !m.IsEndOfGeneration(got[len(got)-1]) {
				t.Errorf("%s: the constrained generation did not end", tc.model)
			}
			fast.Close()
			chain.Close()
			ctx.Close()
		}
	}
}
