package serve

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/datasets"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 8 << 20

// HandlerOptions configure the HTTP API.
type HandlerOptions struct {
	// APIKey, when set, must come as "Authorization: Bearer KEY".
	APIKey string
	Logger *slog.Logger
}

// Handler serves e through OpenAI's HTTP API: POST /v1/chat/completions
// and /v1/completions (streamed as server-sent events with "stream": true),
// GET /v1/models and /v1/models/{model}. Errors are OpenAI's JSON error
// objects.
func Handler(e *Engine, o HandlerOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{e: e, o: o, log: o.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", h.chat)
	mux.HandleFunc("POST /v1/completions", h.completions)
	mux.HandleFunc("GET /v1/models", h.models)
	mux.HandleFunc("GET /v1/models/{model...}", h.model)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: fmt.Sprintf("Unknown request URL: %s %s. This server answers POST /v1/chat/completions, POST /v1/completions and GET /v1/models.", r.Method, r.URL.Path)})
	})
	return h.wrap(mux)
}

type handler struct {
	e   *Engine
	o   HandlerOptions
	log *slog.Logger
}

// statusWriter records the status of a response, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// wrap checks the key and logs every request.
func (h *handler) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			h.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start).Round(time.Millisecond), "remote", r.RemoteAddr)
		}()
		if h.o.APIKey != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.o.APIKey)) != 1 {
				msg := "You didn't provide an API key. Give it as \"Authorization: Bearer KEY\"."
				if ok {
					msg = "Incorrect API key provided."
				}
				writeError(sw, &Error{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key", Message: msg})
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	body := map[string]any{"message": e.Message, "type": e.Type, "param": nil, "code": nil}
	if e.Param != "" {
		body["param"] = e.Param
	}
	if e.Code != "" {
		body["code"] = e.Code
	}
	writeJSON(w, e.Status, map[string]any{"error": body})
}

// stopList is "stop": a string or an array of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

// content is a message's content: a string, or an array of text parts.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return errors.New("a message's content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content parts of type %q are not supported (only text)", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*c = content(sb.String())
	return nil
}

// promptText is a completion's "prompt": a string, or an array of one.
type promptText string

func (p *promptText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = promptText(s)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil || len(many) != 1 {
		return errors.New("prompt must be a string or an array of one string (token arrays and batches are not supported)")
	}
	*p = promptText(many[0])
	return nil
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// request is the body of both endpoints: the fields OpenAI defines that
// this server honours, and those it accepts only at their defaults.
type request struct {
	Model               string          `json:"model"`
	Messages            *[]wireMessage  `json:"messages"`
	Prompt              *promptText     `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                stopList        `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	N                   *int            `json:"n"`
	User                string          `json:"user"`
	PresencePenalty     float64         `json:"presence_penalty"`
	FrequencyPenalty    float64         `json:"frequency_penalty"`
	LogitBias           map[string]any  `json:"logit_bias"`
	Logprobs            json.RawMessage `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Echo                bool            `json:"echo"`
	Suffix              string          `json:"suffix"`
	BestOf              *int            `json:"best_of"`
	Metadata            map[string]any  `json:"metadata"`
	Store               bool            `json:"store"`
}

type wireMessage struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
	Name    string  `json:"name"`
}

// parse decodes and checks a body into a Request.
func parse(w http.ResponseWriter, r *http.Request, chat bool) (*request, Request, error) {
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Request{}, badRequest("", "The request body is over %d bytes.", MaxBodyBytes)
		}
		return nil, Request{}, badRequest("", "We could not parse the JSON body of your request: %v. (The body must be one JSON object with the fields of OpenAI's API.)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Request{}, badRequest("", "We could not parse the JSON body of your request: more follows the JSON object.")
	}
	out := Request{Model: req.Model}
	switch {
	case req.Model == "":
		return nil, out, badRequest("model", "You must provide a model parameter.")
	case chat && req.Messages == nil:
		return nil, out, badRequest("messages", "Missing required parameter: 'messages'.")
	case chat && req.Prompt != nil:
		return nil, out, badRequest("prompt", "Unrecognized request argument supplied: prompt (chat completions take messages).")
	case !chat && req.Prompt == nil:
		return nil, out, badRequest("prompt", "Missing required parameter: 'prompt'.")
	case !chat && req.Messages != nil:
		return nil, out, badRequest("messages", "Unrecognized request argument supplied: messages (completions take a prompt).")
	case req.MaxTokens != nil && *req.MaxTokens < 0:
		return nil, out, badRequest("max_tokens", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 0, but got %d instead.", *req.MaxTokens)
	case req.MaxCompletionTokens != nil && *req.MaxCompletionTokens < 0:
		return nil, out, badRequest("max_completion_tokens", "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 0, but got %d instead.", *req.MaxCompletionTokens)
	case req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2):
		return nil, out, badRequest("temperature", "Invalid 'temperature': expected a value within [0, 2], but got %g instead.", *req.Temperature)
	case req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1):
		return nil, out, badRequest("top_p", "Invalid 'top_p': expected a value within [0, 1], but got %g instead.", *req.TopP)
	case req.N != nil && *req.N != 1:
		return nil, out, badRequest("n", "Invalid 'n': this server gives one choice per request (n = 1), not %d.", *req.N)
	case req.BestOf != nil && *req.BestOf != 1:
		return nil, out, badRequest("best_of", "Invalid 'best_of': only 1 is supported.")
	case req.PresencePenalty != 0 || req.FrequencyPenalty != 0:
		return nil, out, badRequest("presence_penalty", "presence_penalty and frequency_penalty are not supported: leave them at 0 (answers are sampled as training and eval sample them).")
	case len(req.LogitBias) > 0:
		return nil, out, badRequest("logit_bias", "logit_bias is not supported.")
	case len(req.Logprobs) > 0 && !bytes.Equal(req.Logprobs, []byte("false")) && !bytes.Equal(req.Logprobs, []byte("null")):
		return nil, out, badRequest("logprobs", "logprobs are not supported.")
	case req.Echo || req.Suffix != "":
		return nil, out, badRequest("echo", "echo and suffix are not supported.")
	case req.StreamOptions != nil && !req.Stream:
		return nil, out, badRequest("stream_options", "stream_options is only allowed when stream is true.")
	case len(req.Stop) > 4:
		return nil, out, badRequest("stop", "Invalid 'stop': at most 4 stop sequences, got %d.", len(req.Stop))
	}
	if req.MaxTokens != nil {
		out.MaxTokens = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		out.MaxTokens = *req.MaxCompletionTokens
	}
	if req.Temperature != nil {
		out.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		out.TopP = *req.TopP
	}
	if req.Seed != nil {
		out.Seed = uint32(*req.Seed)
	}
	out.Stop = req.Stop
	if chat {
		out.Messages = []datasets.Message{}
		for i, m := range *req.Messages {
			switch m.Role {
			case "system", "user", "assistant":
			case "developer":
				m.Role = "system"
			default:
				return nil, out, badRequest(fmt.Sprintf("messages[%d].role", i), "Invalid value for 'messages[%d].role': %q (system, developer, user or assistant).", i, m.Role)
			}
			out.Messages = append(out.Messages, datasets.Message{Role: m.Role, Content: string(m.Content)})
		}
	} else {
		out.Prompt = string(*req.Prompt)
	}
	return &req, out, nil
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(r Result) usage {
	return usage{r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens}
}

func (h *handler) chat(w http.ResponseWriter, r *http.Request)        { h.complete(w, r, true) }
func (h *handler) completions(w http.ResponseWriter, r *http.Request) { h.complete(w, r, false) }

func (h *handler) complete(w http.ResponseWriter, r *http.Request, chat bool) {
	wire, req, err := parse(w, r, chat)
	if err != nil {
		writeError(w, err)
		return
	}
	s, err := h.e.Submit(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	object := "text_completion"
	if chat {
		id, object = newID("chatcmpl-"), "chat.completion"
	}
	if !wire.Stream {
		for range s.Pieces() {
		}
		res, err := s.Result()
		if err != nil {
			if r.Context().Err() == nil {
				writeError(w, err)
			}
			return
		}
		choice := map[string]any{"index": 0, "finish_reason": res.FinishReason, "logprobs": nil}
		if chat {
			choice["message"] = map[string]any{"role": "assistant", "content": res.Text}
		} else {
			choice["text"] = res.Text
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": object, "created": created, "model": req.Model,
			"choices": []any{choice}, "usage": usageOf(res), "system_fingerprint": "finetune"})
		return
	}
	object += ".chunk"
	if !chat {
		object = "text_completion"
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	chunk := func(text string, role bool, finish any) map[string]any {
		choice := map[string]any{"index": 0, "finish_reason": finish, "logprobs": nil}
		if chat {
			delta := map[string]any{}
			if role {
				delta["role"] = "assistant"
			}
			if text != "" || !role {
				delta["content"] = text
			}
			choice["delta"] = delta
		} else {
			choice["text"] = text
		}
		return map[string]any{"id": id, "object": object, "created": created, "model": req.Model, "choices": []any{choice}, "system_fingerprint": "finetune"}
	}
	if chat {
		if send(chunk("", true, nil)) != nil {
			return // the client left: the cancelled request context stops decoding
		}
	}
	for p := range s.Pieces() {
		if send(chunk(p, false, nil)) != nil {
			return
		}
	}
	res, err := s.Result()
	if err != nil {
		if r.Context().Err() == nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Type: "server_error", Message: err.Error()}
			}
			_ = send(map[string]any{"error": map[string]any{"message": e.Message, "type": e.Type, "param": nil, "code": nil}})
		}
		return
	}
	if chat {
		c := chunk("", false, res.FinishReason)
		c["choices"].([]any)[0].(map[string]any)["delta"] = map[string]any{}
		if send(c) != nil {
			return
		}
	} else if send(chunk("", false, res.FinishReason)) != nil {
		return
	}
	if wire.StreamOptions != nil && wire.StreamOptions.IncludeUsage {
		u := usageOf(res)
		if send(map[string]any{"id": id, "object": object, "created": created, "model": req.Model, "choices": []any{}, "usage": u}) != nil {
			return
		}
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (h *handler) modelObject(m ModelInfo) modelObject {
	return modelObject{ID: m.Name, Object: "model", Created: h.e.Started().Unix(), OwnedBy: "finetune"}
}

func (h *handler) models(w http.ResponseWriter, r *http.Request) {
	var data []modelObject
	for _, m := range h.e.Models() {
		data = append(data, h.modelObject(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *handler) model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	for _, m := range h.e.Models() {
		if m.Name == name {
			writeJSON(w, http.StatusOK, h.modelObject(m))
			return
		}
	}
	writeError(w, &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model %q does not exist.", name)})
}
