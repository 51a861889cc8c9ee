package evals

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/finetune-dev/finetune/internal/ollamahost"
)

// OllamaOptions configure a contestant served by an Ollama server.
type OllamaOptions struct {
	// Host is the server's URL (default: $OLLAMA_HOST, else
	// http://127.0.0.1:11434).
	Host        string
	Model       string // "llama3.2:1b", "my-tuned-model"
	Settings    Settings
	Concurrency int // requests in flight (0: 1; raise it with the server's OLLAMA_NUM_PARALLEL)
	// Options are more of Ollama's generation options, sent as they are
	// ("repeat_penalty": 1, "num_ctx": 8192, "top_k": 1). Ollama applies
	// its own defaults to what neither Settings nor Options set
	// (repeat_penalty 1.1, top_k 40, ...).
	Options    map[string]any
	Price      Price
	Retry      Retry
	HTTPClient *http.Client
}

// Ollama is a contestant served by an Ollama server through its /api/chat
// endpoint, the model's own chat template applied by the server.
type Ollama struct {
	name     string
	opts     OllamaOptions
	endpoint string
	client   *api.Client
	retry    *retrier
	digest   string // the model's digest, known after Start
}

// NewOllama makes an Ollama contestant.
func NewOllama(name string, o OllamaOptions) (*Ollama, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.Model == "" {
		return nil, fmt.Errorf("contestant %s: no model given", name)
	}
	if len(o.Settings.Choices) > 0 {
		return nil, errNoChoices(name)
	}
	u, err := ollamahost.URL(o.Host)
	if err != nil {
		return nil, fmt.Errorf("contestant %s: %w", name, err)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	o.Settings = o.Settings.withDefaults()
	o.Retry = o.Retry.withDefaults()
	return &Ollama{name: name, opts: o, endpoint: endpoint(u), client: api.NewClient(u, httpClient(o.HTTPClient)), retry: newRetrier(name, o.Retry)}, nil
}

// Name implements Contestant.
func (c *Ollama) Name() string { return c.name }

// Info implements Contestant. Its Identity holds the model's digest once
// Start has run, so a model re-created under the same name is asked again.
func (c *Ollama) Info() Info {
	rt := c.opts.Retry
	return Info{
		Kind: "ollama", Model: c.opts.Model, Endpoint: c.endpoint, Settings: c.opts.Settings,
		Concurrency: c.opts.Concurrency, Price: c.opts.Price, Retry: &rt,
		Identity: identity("ollama", c.opts.Model, c.digest, c.opts.Settings, c.opts.Options),
	}
}

// Start checks that the server has the model and records its digest.
func (c *Ollama) Start(ctx context.Context) error {
	var list *api.ListResponse
	_, err := c.retry.do(ctx, func(ctx context.Context) error {
		var err error
		list, err = c.client.List(ctx)
		return ollamaError(err)
	})
	if err != nil {
		return fmt.Errorf("Ollama server %s: %w", c.endpoint, err)
	}
	want := c.opts.Model
	if !strings.Contains(want, ":") {
		want += ":latest"
	}
	var names []string
	for _, m := range list.Models {
		if m.Name == want || m.Model == want || m.Name == c.opts.Model {
			c.digest = m.Digest
			return nil
		}
		names = append(names, m.Name)
	}
	return &FatalError{fmt.Errorf("the Ollama server %s has no model %q (it has: %s); pull or create it first", c.endpoint, c.opts.Model, strings.Join(names, ", "))}
}

// Answer implements Contestant: one /api/chat request, not streamed,
// retried as Retry says.
func (c *Ollama) Answer(ctx context.Context, cs Case) (Answer, error) {
	s := c.opts.Settings
	stream := false
	req := &api.ChatRequest{Model: c.opts.Model, Stream: &stream, Options: map[string]any{}}
	for k, v := range c.opts.Options {
		req.Options[k] = v
	}
	req.Options["temperature"] = s.Temperature
	req.Options["num_predict"] = s.MaxTokens
	req.Options["seed"] = s.Seed
	if s.TopP > 0 && s.TopP < 1 {
		req.Options["top_p"] = s.TopP
	}
	if len(s.Stop) > 0 {
		req.Options["stop"] = s.Stop
	}
	for _, m := range cs.Prompt {
		req.Messages = append(req.Messages, api.Message{Role: m.Role, Content: m.Content})
	}
	if len(req.Messages) == 0 {
		return Answer{}, errors.New("the case has no prompt messages")
	}
	var ans Answer
	retries, err := c.retry.do(ctx, func(ctx context.Context) error {
		start := time.Now()
		var text strings.Builder
		var final *api.ChatResponse
		chunks := 0
		err := c.client.Chat(ctx, req, func(r api.ChatResponse) error {
			chunks++
			text.WriteString(r.Message.Content)
			if r.Done {
				final = &r
			}
			return nil
		})
		if err != nil {
			return ollamaError(err)
		}
		if final == nil {
			if chunks == 0 {
				// The client ends silently when the connection
				// drops before the (single, unstreamed) response.
				return errors.New("the response ended before the server said it was done (connection dropped?)")
			}
			// Ollama cuts an answer that repeats one token more than
			// 30 times and sends what it has without done: the
			// answer, as the server gives it.
			final = &api.ChatResponse{}
		}
		ans = Answer{
			Text:    text.String(),
			Usage:   Usage{PromptTokens: final.PromptEvalCount, CompletionTokens: final.EvalCount},
			Latency: time.Since(start),
			// "stop" or "length" ("" from a cut answer sent without
			// done: unknown).
			FinishReason: final.DoneReason,
		}
		return nil
	})
	ans.Retries = retries
	return ans, err
}

// ollamaError turns the Ollama client's HTTP errors into statusError.
func ollamaError(err error) error {
	var se api.StatusError
	var ae api.AuthorizationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		if se.StatusCode == http.StatusNotFound {
			return &FatalError{&statusError{code: se.StatusCode, msg: se.ErrorMessage}}
		}
		return &statusError{code: se.StatusCode, msg: se.ErrorMessage}
	case errors.As(err, &ae):
		return &statusError{code: ae.StatusCode, msg: ae.Status}
	}
	return err
}
