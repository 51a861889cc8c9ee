package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/serve"
)

// serveKeyEnv is the default variable the server's key is read from.
const serveKeyEnv = "FINETUNE_SERVE_API_KEY"

func runServe(args []string) error {
	fs := newFlags("serve")
	model := fs.String("model", "", "base model (GGUF file); default: the base the adapters were trained on")
	baseName := fs.String("base-name", "", "the base's name in requests' \"model\" (default: its file name without .gguf)")
	host := fs.String("host", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
	port := fs.Int("port", 8080, "port to listen on (0: any free port, printed)")
	best := fs.Bool("best", false, "serve only the best trial of each sweep folder, under the sweep's name")
	runsDir := fs.String("runs", "runs", "folder of run folders where a published name is looked up")
	template := fs.String("template", "", "the base's chat template: a llama.cpp built-in name or \"none\" (default: the adapters' training template, else the model's)")
	ctxSize := fs.Int("ctx", 2048, "token positions of one request, prompt and answer")
	parallel := fs.Int("parallel", 4, "requests for one model decoded together (sequences of one context)")
	maxAdapters := fs.Int("max-adapters", 4, "adapters kept loaded; the least recently used beyond it is unloaded")
	queue := fs.Int("queue", 64, "requests that may wait for their turn; more are refused with 429 and Retry-After")
	keyEnv := fs.String("api-key-env", serveKeyEnv, "environment variable holding the key clients must send (as \"Authorization: Bearer KEY\"); unset or empty: no key")
	threads := fs.Int("threads", runtime.NumCPU(), "CPU threads")
	device := fs.String("device", "auto", "where the model runs: auto (the first GPU, else the CPU), cpu, cuda[:N], or a device's name")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *ctxSize < 16:
		return usageErr("--ctx %d: give at least 16 tokens", *ctxSize)
	case *parallel < 1 || *maxAdapters < 1 || *queue < 1 || *threads < 1:
		return usageErr("--parallel, --max-adapters, --queue and --threads must be at least 1")
	case *port < 0 || *port > 65535:
		return usageErr("--port %d is not a port", *port)
	}
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	entries, err := serve.Resolve(cx, pos, serve.ResolveOptions{Best: *best, Runs: *runsDir})
	if err != nil {
		return err
	}
	base := *model
	for _, e := range entries {
		switch {
		case base == "" && e.Base != "":
			base = e.Base
		case *model == "" && e.Base != "" && e.Base != base:
			return usageErr("the adapters were trained on different bases (%s, %s): serve one base at a time, or name it with --model", base, e.Base)
		}
	}
	if base == "" {
		return usageErr("give the base with --model M.gguf (no adapter says which base it was trained on)")
	}
	// The base answers with the template its adapters were trained with
	// when they agree on one.
	baseTemplate, baseSystem := *template, ""
	if baseTemplate == "" && len(entries) > 0 {
		baseTemplate, baseSystem = entries[0].Template, entries[0].System
		for _, e := range entries[1:] {
			if e.Template != baseTemplate {
				baseTemplate = ""
			}
			if e.System != baseSystem {
				baseSystem = ""
			}
		}
	}
	loadBackends()
	warnSIMD()
	dev, err := ggml.PickDevice(*device)
	if err != nil {
		return err
	}
	logger := slog.New(log.Default())
	key := os.Getenv(*keyEnv)
	e, err := serve.New(serve.Options{Base: base, BaseName: *baseName, Device: dev, Template: baseTemplate, System: baseSystem, Adapters: entries,
		Sequences: *parallel, Context: *ctxSize, MaxAdapters: *maxAdapters, Queue: *queue, Threads: *threads, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		e.Close()
		return err
	}
	srv := &http.Server{Handler: serve.Handler(e, serve.HandlerOptions{APIKey: key, Logger: logger}), ReadHeaderTimeout: 30 * time.Second}
	for _, m := range e.Models() {
		what := "base"
		if m.Adapter != "" {
			what = m.From
		}
		log.Info("model", "name", m.Name, "is", what)
	}
	keyNote := "no key"
	if ip := net.ParseIP(*host); key == "" && (ip == nil || !ip.IsLoopback()) {
		log.Warn("listening beyond this machine without a key: anyone who can reach it can use it", "host", *host, "key", "set $"+*keyEnv)
	}
	if key != "" {
		keyNote = "key from $" + *keyEnv
	}
	fmt.Fprintf(os.Stderr, "serving %d models at http://%s/v1 (%s); Ctrl-C stops after the requests in flight\n", len(e.Models()), ln.Addr(), keyNote)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-cx.Done():
		stop() // a second Ctrl-C kills the process
		log.Info("draining: no new requests; finishing those in flight")
		err = srv.Shutdown(context.Background())
	}
	e.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}
