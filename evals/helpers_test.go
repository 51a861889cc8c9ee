package evals

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// scripted is a contestant whose answers a test writes: answer(case) gives
// the text, or an error.
type scripted struct {
	name        string
	answer      func(c Case) (string, error)
	concurrency int
	price       Price
	identity    string
	calls       atomic.Int64
	mu          sync.Mutex
	asked       map[string]int // prompt text -> times asked
	reason      string         // every answer's FinishReason
}

func newScripted(name string, answer func(c Case) (string, error)) *scripted {
	return &scripted{name: name, answer: answer, concurrency: 2, identity: "scripted-" + name, asked: map[string]int{}}
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Info() Info {
	return Info{Kind: "scripted", Model: s.name, Concurrency: s.concurrency, Price: s.price, Identity: s.identity}
}

func (s *scripted) Answer(ctx context.Context, c Case) (Answer, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.asked[lastUser(c)]++
	s.mu.Unlock()
	text, err := s.answer(c)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Text: text, Usage: Usage{PromptTokens: 10, CompletionTokens: len(text)}, FinishReason: s.reason}, nil
}

func lastUser(c Case) string {
	for i := len(c.Prompt) - 1; i >= 0; i-- {
		if c.Prompt[i].Role == "user" {
			return c.Prompt[i].Content
		}
	}
	return c.RenderedPrompt
}

// qaCase is a one-turn case.
func qaCase(q, ref, label string) Case {
	return Case{Prompt: []Message{{Role: "user", Content: q}}, RenderedPrompt: q, Reference: ref, Label: label, Source: fmt.Sprintf("test:%s", q)}
}
