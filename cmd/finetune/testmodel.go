package main

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/testmodel"
)

func runTestmodel(args []string) error {
	fs := newFlags("testmodel")
	out := fs.String("out", "", "output GGUF file")
	layers := fs.Int("layers", 2, "transformer blocks")
	embd := fs.Int("embd", 64, "hidden size")
	heads := fs.Int("heads", 4, "attention heads")
	kvHeads := fs.Int("kv-heads", 0, "key/value heads (0: same as --heads)")
	ff := fs.Int("ff", 0, "feed-forward size (0: about 8/3 of --embd, rounded up to 32)")
	ctx := fs.Int("ctx", 256, "context length")
	vocabFrom := fs.String("vocab-from", "", "copy the tokenizer of this GGUF model")
	byteVocab := fs.Bool("byte-vocab", false, "use a 259-token byte vocabulary")
	vocabSize := fs.Int("vocab-size", 0, "with --byte-vocab: pad the vocabulary to this many tokens")
	typ := fs.String("type", "f32", "weight type: "+strings.Join(testmodel.Types(), ", "))
	seed := fs.Uint64("seed", 1, "random seed")
	tied := fs.Bool("tied", false, "no output.weight: the output head is the token embedding")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("unexpected argument %q", pos[0])
	case *out == "":
		return usageErr("--out is required")
	case (*vocabFrom == "") == !*byteVocab && *vocabFrom != "":
		return usageErr("give either --vocab-from or --byte-vocab, not both")
	case *vocabFrom == "" && !*byteVocab:
		return usageErr("give --vocab-from BASE.gguf or --byte-vocab")
	}
	if *kvHeads == 0 {
		*kvHeads = *heads
	}
	if *ff == 0 {
		*ff = (*embd*8/3 + 31) / 32 * 32
	}
	c := testmodel.Config{Layers: *layers, Embd: *embd, Heads: *heads, KVHeads: *kvHeads, FF: *ff, Context: *ctx,
		Type: *typ, VocabFrom: *vocabFrom, VocabSize: *vocabSize, Seed: *seed, TiedOutput: *tied}
	if err := testmodel.Write(*out, c); err != nil {
		return err
	}
	log.Info("wrote test model", "file", *out, "layers", c.Layers, "embd", c.Embd, "heads", c.Heads, "kv_heads", c.KVHeads, "ff", c.FF, "type", c.Type)
	fmt.Println(*out)
	return nil
}
