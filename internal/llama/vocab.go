package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Token is a vocabulary id.
type Token = int32

// VocabType names the tokenizer family.
func (m *Model) VocabType() string {
	switch C.llama_vocab_type(m.vocab) {
	case C.LLAMA_VOCAB_TYPE_NONE:
		return "none"
	case C.LLAMA_VOCAB_TYPE_SPM:
		return "SPM (SentencePiece)"
	case C.LLAMA_VOCAB_TYPE_BPE:
		return "BPE (byte-level)"
	case C.LLAMA_VOCAB_TYPE_WPM:
		return "WPM (WordPiece)"
	case C.LLAMA_VOCAB_TYPE_UGM:
		return "UGM (Unigram)"
	case C.LLAMA_VOCAB_TYPE_RWKV:
		return "RWKV"
	case C.LLAMA_VOCAB_TYPE_PLAMO2:
		return "PLaMo-2"
	}
	return "unknown"
}

// VocabSize is the number of tokens.
func (m *Model) VocabSize() int { return int(C.llama_vocab_n_tokens(m.vocab)) }

// BOS, EOS and EOT are the special tokens (-1 when the model has none).
func (m *Model) BOS() Token { return Token(C.llama_vocab_bos(m.vocab)) }
func (m *Model) EOS() Token { return Token(C.llama_vocab_eos(m.vocab)) }
func (m *Model) EOT() Token { return Token(C.llama_vocab_eot(m.vocab)) }

// AddsBOS reports whether tokenizing with special tokens prepends BOS.
func (m *Model) AddsBOS() bool { return bool(C.llama_vocab_get_add_bos(m.vocab)) }

// IsEndOfGeneration reports whether t ends generation (EOS, EOT, ...).
func (m *Model) IsEndOfGeneration(t Token) bool {
	return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(t)))
}

// TokenText is the token's text as stored in the vocabulary.
func (m *Model) TokenText(t Token) string {
	if t < 0 || int(t) >= m.VocabSize() {
		return ""
	}
	return C.GoString(C.llama_vocab_get_text(m.vocab, C.llama_token(t)))
}

// Tokenize turns text into tokens. addSpecial adds BOS/EOS as the model is
// configured to; parseSpecial lets control-token text ("<|eot_id|>") become
// the control token instead of plain text.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	capacity := len(text) + 8
	for {
		out := make([]Token, capacity)
		n := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)),
			(*C.llama_token)(unsafe.Pointer(&out[0])), C.int32_t(capacity),
			C.bool(addSpecial), C.bool(parseSpecial))
		if n >= 0 {
			return out[:n], nil
		}
		if n == C.int32_t(-1<<31) || int(-n) <= capacity {
			return nil, fmt.Errorf("%s: tokenizing %d bytes of text failed", m.Path, len(text))
		}
		capacity = int(-n)
	}
}

// Piece is the text of one token as generation prints it (special tokens
// rendered when special is true). It may be part of a UTF-8 sequence.
func (m *Model) Piece(t Token, special bool) []byte {
	buf := make([]byte, 64)
	for {
		n := C.llama_token_to_piece(m.vocab, C.llama_token(t), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
		if n >= 0 {
			return buf[:n]
		}
		buf = make([]byte, int(-n))
	}
}

// Detokenize turns tokens back into text.
func (m *Model) Detokenize(tokens []Token, removeSpecial, unparseSpecial bool) string {
	if len(tokens) == 0 {
		return ""
	}
	size := len(tokens)*8 + 16
	for {
		buf := make([]byte, size)
		n := C.llama_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(size), C.bool(removeSpecial), C.bool(unparseSpecial))
		if n >= 0 {
			return string(buf[:n])
		}
		size = int(-n)
	}
}
