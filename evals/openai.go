package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	url      string // the chat completions URL
	key      string
	client   *http.Client
	retry    *retrier
	red      *redactor // removes the key from what the server says
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
	if len(o.Settings.Choices) > 0 {
		return nil, errNoChoices(name)
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
	o.Retry = o.Retry.withDefaults()
	red := &redactor{}
	red.add(key)
	return &OpenAI{name: name, opts: o, endpoint: endpoint(u), url: strings.TrimRight(o.BaseURL, "/") + "/chat/completions", key: key,
		client: httpClient(o.HTTPClient), retry: newRetrier(name, o.Retry), red: red}, nil
}

// secrets implements secretKeeper: Run removes the key from everything.
func (c *OpenAI) secrets() []string { return []string{c.key} }

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
	rt := c.opts.Retry
	return Info{
		Kind: "openai", Model: c.opts.Model, Endpoint: c.endpoint, Settings: c.opts.Settings,
		Concurrency: c.opts.Concurrency, Price: c.opts.Price, Retry: &rt,
		Identity: identity("openai", c.opts.BaseURL, c.opts.Model, c.opts.Settings, c.opts.MaxCompletionTokens),
	}
}

// chatRequest is the body of a chat completion request. It is written
// here rather than by go-openai, whose request type omits a temperature
// of 0: servers then sample at their default (1), and a tiny positive
// stand-in makes llama.cpp's sampler divide the logits by it and abort.
type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	Temperature         float64       `json:"temperature"` // always sent: 0 is greedy
	TopP                float64       `json:"top_p,omitempty"`
	MaxTokens           int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens int           `json:"max_completion_tokens,omitempty"`
	Stop                []string      `json:"stop,omitempty"`
	Seed                *int64        `json:"seed,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// maxResponseBytes bounds what is read of a response.
const maxResponseBytes = 64 << 20

// Answer implements Contestant: one chat completion, retried as Retry says.
func (c *OpenAI) Answer(ctx context.Context, cs Case) (Answer, error) {
	s := c.opts.Settings
	req := chatRequest{Model: c.opts.Model, Stop: s.Stop, Temperature: max(s.Temperature, 0), Seed: &s.Seed}
	for _, m := range cs.Prompt {
		req.Messages = append(req.Messages, chatMessage{Role: m.Role, Content: m.Content})
	}
	if len(req.Messages) == 0 {
		return Answer{}, errors.New("the case has no prompt messages")
	}
	if s.TopP > 0 && s.TopP < 1 {
		req.TopP = s.TopP
	}
	if c.opts.MaxCompletionTokens {
		req.MaxCompletionTokens = s.MaxTokens
	} else {
		req.MaxTokens = s.MaxTokens
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Answer{}, err
	}
	var ans Answer
	retries, err := c.retry.do(ctx, func(ctx context.Context) error {
		start := time.Now()
		resp, err := c.post(ctx, body)
		if err != nil {
			return err
		}
		if len(resp.Choices) == 0 {
			return errors.New("the response has no choices")
		}
		ans = Answer{
			Text:    c.red.text(resp.Choices[0].Message.Content),
			Usage:   Usage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens},
			Latency: time.Since(start),
			// "stop", "length"; others ("content_filter", "tool_calls")
			// are kept as the server says them.
			FinishReason: string(resp.Choices[0].FinishReason),
		}
		return nil
	})
	ans.Retries = retries
	return ans, err
}

// post sends one chat completion request and reads its response: an HTTP
// error status becomes a statusError with the server's message, a body cut
// off or not JSON an error that says so, each with the key removed.
func (c *OpenAI) post(ctx context.Context, body []byte) (*openai.ChatCompletionResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("HTTP %d: the response was cut off after %d bytes: %s", resp.StatusCode, len(data), c.red.errText(err.Error()))
	}
	if resp.StatusCode >= 400 {
		return nil, &statusError{code: resp.StatusCode, msg: c.errorMessage(data)}
	}
	var out openai.ChatCompletionResponse
	if err := json.Unmarshal(data, &out); err != nil {
		trimmed := bytes.TrimSpace(data)
		if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
			// Truncated or garbled JSON: worth another attempt.
			return nil, fmt.Errorf("HTTP %d: the response is not valid JSON (%s): %s", resp.StatusCode, err, c.clip(data))
		}
		// A web page or plain text: the base URL names something that is
		// not an OpenAI-compatible API, and no retry changes that.
		return nil, &FatalError{fmt.Errorf("HTTP %d with a body that is not a chat completion (Content-Type %q; is base_url the API's, ending in /v1?): %s",
			resp.StatusCode, resp.Header.Get("Content-Type"), c.clip(data))}
	}
	return &out, nil
}

// errorMessage is the message of an error response: the JSON error's
// message, else the body, clipped, the key removed.
func (c *OpenAI) errorMessage(data []byte) string {
	var er openai.ErrorResponse
	if json.Unmarshal(data, &er) == nil && er.Error != nil && er.Error.Message != "" {
		return clipText(c.red.errText(er.Error.Message), 300)
	}
	return c.clip(data)
}

// clip is a response body for an error text: the key removed first (so
// that clipping cannot leave half of it), white space folded, at most 200
// characters.
func (c *OpenAI) clip(data []byte) string {
	return clipText(strings.Join(strings.Fields(c.red.errText(string(data))), " "), 200)
}

// transportError is err from the HTTP client, the key removed (a URL in
// the error may hold one).
func (c *OpenAI) transportError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return c.red.err(err)
}

func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
