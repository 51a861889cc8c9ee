// Package openaitest is an OpenAI-compatible chat completions server on
// loopback for tests, whose first path segment says how it misbehaves
// (rate limits, server errors, hangs, a web page, the key echoed back), so
// that every API client of finetune is held to the same faults.
package openaitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// EchoedKey is a key for the misbehaving servers to be sent and echo back.
const EchoedKey = "sk-live-ECHOED-0123456789abcdefXYZ"

// API is an OpenAI-compatible server on loopback whose first
// path segment says how it misbehaves: /ok/v1/chat/completions answers,
// /hang/v1/... never does, /s401/v1/... rejects the key and echoes it, and
// so on (see serve).
type API struct {
	t        testing.TB
	Srv      *httptest.Server
	mu       sync.Mutex
	requests map[string]int // by behaviour
	bodies   map[string][]map[string]any
}

// New starts the server until the test ends.
func New(t testing.TB) *API {
	m := &API{t: t, requests: map[string]int{}, bodies: map[string][]map[string]any{}}
	m.Srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Srv.Close)
	return m
}

// URL is the base URL (up to /v1) of a behaviour.
func (m *API) URL(behaviour string) string { return m.Srv.URL + "/" + behaviour + "/v1" }

// Count is how many requests a behaviour got.
func (m *API) Count(behaviour string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[behaviour]
}

// Bodies are the JSON bodies a behaviour got.
func (m *API) Bodies(behaviour string) []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]map[string]any(nil), m.bodies[behaviour]...)
}

func (m *API) serve(w http.ResponseWriter, r *http.Request) {
	behaviour, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	m.mu.Lock()
	m.requests[behaviour]++
	m.bodies[behaviour] = append(m.bodies[behaviour], body)
	m.mu.Unlock()
	if rest != "v1/chat/completions" {
		http.Error(w, "no such path", http.StatusNotFound)
		return
	}
	auth := r.Header.Get("Authorization")
	sentKey := strings.TrimPrefix(auth, "Bearer ")
	question := ""
	if msgs, ok := body["messages"].([]any); ok && len(msgs) > 0 {
		question, _ = msgs[len(msgs)-1].(map[string]any)["content"].(string)
	}
	answer := func(text string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3}}`, text)
	}
	jsonError := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error"}})
		w.Write(b)
	}
	switch behaviour {
	case "ok":
		answer(strings.ToUpper(question))
	case "nonjson": // a web page where the API should be, the key in it
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><body><h1>Welcome</h1><p>signed in with %s</p></body></html>", sentKey)
	case "hang":
		<-r.Context().Done()
	case "midbody":
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			m.t.Error(err)
			return
		}
		fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"cut")
		buf.Flush()
		conn.Close()
	case "s401": // the key echoed in the error body, as some gateways do
		jsonError(http.StatusUnauthorized, "Incorrect API key provided: "+sentKey+". You can find your API key at https://example.com/keys.")
	case "s403": // a proxy that echoes the request's headers, as text
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "forbidden by policy\nrequest headers:\nAuthorization: %s\nX-Api-Key: %s\n", auth, sentKey)
	case "s404":
		jsonError(http.StatusNotFound, "The model `m` does not exist or you do not have access to it.")
	case "s429":
		w.Header().Set("Retry-After-Ms", "20")
		jsonError(http.StatusTooManyRequests, "Rate limit reached for key "+sentKey)
	case "s500":
		http.Error(w, "upstream exploded (auth "+auth+")", http.StatusInternalServerError)
	case "header": // the key echoed in response headers, the answer fine
		w.Header().Set("X-Echo-Authorization", auth)
		w.Header().Set("X-Api-Key", sentKey)
		answer(strings.ToUpper(question))
	case "answer": // the key echoed in a 200 answer's text
		answer("you sent " + sentKey + " for " + question)
	case "partial": // the last case fails
		if question == "q2" {
			jsonError(http.StatusInternalServerError, "the model crashed on this one ("+sentKey+")")
			return
		}
		answer(strings.ToUpper(question))
	default:
		http.Error(w, "unknown behaviour", http.StatusNotFound)
	}
}
