package evals

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// OpenAIOptions configure a contestant behind an OpenAI-compatible chat
// completions API (OpenAI, Azure-style gateways, vLLM, llama.cpp's server,
// Ollama's /v1, ...).
type OpenAIOptions struct {
	// BaseURL of the API, up to and including /v1 (default
	// https://api.openai.com/v1).
	BaseURL string
	Model   string
	// APIKeyEnv names the environment variable that holds the API key
	// ("OPENAI_API_KEY"); "" sends no key. The key is never logged or
	// written anywhere.
	APIKeyEnv string
	Settings  Settings
	// MaxCompletionTokens sends the limit as max_completion_tokens (what
	// OpenAI's reasoning models require) instead of max_tokens.
	MaxCompletionTokens bool
	Concurrency         int // requests in flight (0: 4)
	Price               Price
	Retry               Retry
	// HTTPClient to use (nil: a default one).
	HTTPClient *http.Client
}

// OpenAI is a contestant served by an OpenAI-compatible API.
type OpenAI struct {
	name     string
	opts     OpenAIOptions
	endpoint string
	client   *openai.Client
	retry    *retrier
}

// NewOpenAI makes an OpenAI-compatible contestant. It fails when the named
// environment variable holding the key is unset or empty.
func NewOpenAI(name string, o OpenAIOptions) (*OpenAI, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if o.Model == "" {
		return nil, fmt.Errorf("contestant %s: no model given", name)
	}
	if o.BaseURL == "" {
		o.BaseURL = "https://api.openai.com/v1"
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("contestant %s: the base URL is not an http(s) URL", name)
	}
	if u.User != nil {
		return nil, fmt.Errorf("contestant %s: put the API key in an environment variable, not in the base URL", name)
	}
	key := ""
	if o.APIKeyEnv != "" {
		key = os.Getenv(o.APIKeyEnv)
		if key == "" {
			return nil, fmt.Errorf("contestant %s: the environment variable %s that should hold the API key is not set", name, o.APIKeyEnv)
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	o.Settings = o.Settings.withDefaults()
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = strings.TrimRight(o.BaseURL, "/")
	cfg.HTTPClient = httpClient(o.HTTPClient)
	return &OpenAI{name: name, opts: o, endpoint: endpoint(u), client: openai.NewClientWithConfig(cfg), retry: newRetrier(name, o.Retry)}, nil
}

// endpoint is a URL as reports show it: no user, query or fragment, where
// a key could hide.
func endpoint(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.Fragment = nil, "", ""
	return v.String()
}

// Name implements Contestant.
func (c *OpenAI) Name() string { return c.name }

// Info implements Contestant.
func (c *OpenAI) Info() Info {
	return Info{
		Kind: "openai", Model: c.opts.Model, Endpoint: c.endpoint, Settings: c.opts.Settings,
		Concurrency: c.opts.Concurrency, Price: c.opts.Price,
		Identity: identity("openai", c.opts.BaseURL, c.opts.Model, c.opts.Settings, c.opts.MaxCompletionTokens),
	}
}

// Answer implements Contestant: one chat completion, retried as Retry says.
func (c *OpenAI) Answer(ctx context.Context, cs Case) (Answer, error) {
	s := c.opts.Settings
	req := openai.ChatCompletionRequest{Model: c.opts.Model, Stop: s.Stop}
	for _, m := range cs.Prompt {
		req.Messages = append(req.Messages, openai.ChatCompletionMessage{Role: m.Role, Content: m.Content})
	}
	if len(req.Messages) == 0 {
		return Answer{}, errors.New("the case has no prompt messages")
	}
	// go-openai omits a zero temperature, and servers then use their
	// default (1): the smallest positive float32 is its documented way to
	// ask for greedy decoding.
	req.Temperature = float32(s.Temperature)
	if s.Temperature <= 0 {
		req.Temperature = math.SmallestNonzeroFloat32
	}
	if s.TopP > 0 && s.TopP < 1 {
		req.TopP = float32(s.TopP)
	}
	if c.opts.MaxCompletionTokens {
		req.MaxCompletionTokens = s.MaxTokens
	} else {
		req.MaxTokens = s.MaxTokens
	}
	seed := int(s.Seed)
	req.Seed = &seed

	var ans Answer
	retries, err := c.retry.do(ctx, func(ctx context.Context) error {
		start := time.Now()
		resp, err := c.client.CreateChatCompletion(ctx, req)
		if err != nil {
			return openAIError(err)
		}
		if len(resp.Choices) == 0 {
			return errors.New("the response has no choices")
		}
		ans = Answer{
			Text:    resp.Choices[0].Message.Content,
			Usage:   Usage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens},
			Latency: time.Since(start),
		}
		return nil
	})
	ans.Retries = retries
	return ans, err
}

// openAIError turns go-openai's HTTP errors into statusError.
func openAIError(err error) error {
	var ae *openai.APIError
	var re *openai.RequestError
	switch {
	case errors.As(err, &ae) && ae.HTTPStatusCode > 0:
		return &statusError{code: ae.HTTPStatusCode, msg: ae.Message}
	case errors.As(err, &re) && re.HTTPStatusCode > 0:
		return &statusError{code: re.HTTPStatusCode, msg: strings.TrimSpace(clipText(string(re.Body), 200))}
	}
	return err
}

func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
