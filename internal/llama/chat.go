package llama

/*
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"regexp"
	"strings"
	"unsafe"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string // "system", "user" or "assistant"
	Content string
}

// BuiltinTemplates lists the chat template names llama.cpp knows
// ("chatml", "llama2", "llama3", ...).
func BuiltinTemplates() []string {
	Init()
	n := C.llama_chat_builtin_templates(nil, 0)
	if n <= 0 {
		return nil
	}
	ptrs := make([]*C.char, int(n))
	C.llama_chat_builtin_templates(&ptrs[0], C.size_t(n))
	out := make([]string, n)
	for i, p := range ptrs {
		out[i] = C.GoString(p)
	}
	return out
}

// ApplyTemplate renders msgs with a chat template through llama.cpp's own
// template logic (the one Ollama's llama.cpp runner uses). tmpl is a
// template text or a built-in template name. addAssistant ends the prompt
// with the header of an assistant turn.
//
// llama.cpp does not run a template's Jinja: it recognises the template's
// family by its markers and renders that family with its own code, which
// drops what a template adds of its own. The one such addition a family
// renderer loses that matters for training is a default system prompt
// (SmolLM2's, Qwen2's: see DefaultSystem); a conversation that does not
// start with a system turn gets it here, as Jinja (transformers'
// apply_chat_template) renders the template.
func ApplyTemplate(tmpl string, msgs []Message, addAssistant bool) (string, error) {
	Init()
	if tmpl == "" {
		return "", fmt.Errorf("no chat template given")
	}
	if sys, ok := DefaultSystem(tmpl); ok && len(msgs) > 0 && msgs[0].Role != "system" {
		msgs = append([]Message{{Role: "system", Content: sys}}, msgs...)
	}
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))
	cmsgs := make([]C.struct_llama_chat_message, len(msgs))
	total := len(tmpl)
	for i, m := range msgs {
		role, content := C.CString(m.Role), C.CString(m.Content)
		defer C.free(unsafe.Pointer(role))
		defer C.free(unsafe.Pointer(content))
		cmsgs[i] = C.struct_llama_chat_message{role: role, content: content}
		total += len(m.Role) + len(m.Content)
	}
	var first *C.struct_llama_chat_message
	if len(cmsgs) > 0 {
		first = &cmsgs[0]
	}
	size := 2*total + 256
	for {
		buf := make([]byte, size)
		n := C.llama_chat_apply_template(ctmpl, first, C.size_t(len(cmsgs)), C.bool(addAssistant), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(size))
		if n < 0 {
			return "", fmt.Errorf("llama.cpp does not support this chat template (it knows templates like chatml, llama2, llama3, mistral; name one with --template)")
		}
		if int(n) <= size {
			return string(buf[:n]), nil
		}
		size = int(n) + 1
	}
}

// ApplyChatTemplate renders msgs with the model's embedded template, or
// with override (a template text or built-in name) when it is not empty.
func (m *Model) ApplyChatTemplate(override string, msgs []Message, addAssistant bool) (string, error) {
	tmpl := override
	if tmpl == "" {
		tmpl = m.ChatTemplate()
		if tmpl == "" {
			return "", fmt.Errorf("%s: the model has no chat template; name one of llama.cpp's built-in templates (%s)", m.Path, shortList(BuiltinTemplates(), 8))
		}
	}
	out, err := ApplyTemplate(tmpl, msgs, addAssistant)
	if err != nil {
		return "", fmt.Errorf("%s: %w", m.Path, err)
	}
	return out, nil
}

func shortList(xs []string, n int) string {
	s := ""
	for i, x := range xs {
		if i == n {
			return s + ", …"
		}
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// defaultSystemTurn is a ChatML system turn written out whole as one
// string literal of a Jinja template (quoted either way, its newlines
// written as they are or as \n).
var defaultSystemTurn = regexp.MustCompile(`'<\|im_start\|>system(?:\n|\\n)([^'{}]*)<\|im_end\|>(?:\n|\\n)?'|"<\|im_start\|>system(?:\n|\\n)([^"{}]*)<\|im_end\|>(?:\n|\\n)?"`)

// DefaultSystem returns the system prompt a Jinja chat template gives a
// conversation that does not start with a system turn: a ChatML system
// turn written out as a string literal in a template that tests the first
// message's role, as SmolLM2's does ("{% if loop.first and
// messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a
// helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n'
// }}{% endif %}") and Qwen2's and Qwen2.5's ("You are a helpful
// assistant.", "You are Qwen, created by Alibaba Cloud. You are a helpful
// assistant."). ok is false for any other template, built-in names
// included.
func DefaultSystem(tmpl string) (prompt string, ok bool) {
	if !strings.Contains(tmpl, "messages[0]['role']") && !strings.Contains(tmpl, `messages[0]["role"]`) && !strings.Contains(tmpl, "messages[0].role") {
		return "", false
	}
	m := defaultSystemTurn.FindStringSubmatch(tmpl)
	if m == nil {
		return "", false
	}
	text := m[1] + m[2] // one of the two is the match
	return strings.NewReplacer(`\\`, `\`, `\n`, "\n", `\t`, "\t").Replace(text), true
}
