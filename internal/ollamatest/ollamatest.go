// Package ollamatest runs a real Ollama server for tests: the one
// scripts/build-ollama.sh builds from the ollama module this build pins,
// on a free loopback port with its own model store and home folder.
package ollamatest

import (
	"context"
	"go/build"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/shared"
)

// Binary is the Ollama server tests run: $FINETUNE_OLLAMA, else
// $GOPATH/bin/ollama-<version of github.com/ollama/ollama in go.mod>.
func Binary() string {
	if p := os.Getenv("FINETUNE_OLLAMA"); p != "" {
		return p
	}
	// Test binaries carry no module build information: read go.mod.
	version := "unknown"
	if b, err := os.ReadFile(filepath.Join(shared.ModuleRoot(), "go.mod")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/ollama/ollama" {
				version = f[1]
			} else if len(f) >= 3 && f[0] == "require" && f[1] == "github.com/ollama/ollama" {
				version = f[2]
			}
		}
	}
	return BinaryFor(version)
}

// BinaryFor is the Ollama server of another release, e.g. "v0.34.4":
// $GOPATH/bin/ollama-<version>, as `scripts/build-ollama.sh VERSION`
// installs it.
func BinaryFor(version string) string {
	gopath := build.Default.GOPATH
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		gopath = strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
	}
	return filepath.Join(gopath, "bin", "ollama-"+version)
}

// Server is a running `ollama serve`.
type Server struct {
	URL    *url.URL
	Client *api.Client
	Home   string // its HOME
	Models string // its OLLAMA_MODELS
	Log    string // its log file
	Bin    string
}

// Options change how the server starts.
type Options struct {
	Env []string // more environment, e.g. "OLLAMA_NEW_ENGINE=1"
	// Wrap runs the server under another command (e.g. unshare), given
	// the server's command line.
	Wrap func(bin string, args ...string) *exec.Cmd
	// Models is the model store (default: a folder in the test's temp
	// folder).
	Models string
	// Version runs the server of that release ("v0.34.4": BinaryFor)
	// instead of the pinned one.
	Version string
}

// Start runs `ollama serve` until the test ends; it skips the test, saying
// so, when there is no server binary.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Binary()
	if o.Version != "" {
		bin = BinaryFor(o.Version)
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("SKIPPED: no Ollama %s server at %s (scripts/build-ollama.sh %s builds it)", o.Version, bin, o.Version)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("SKIPPED: no Ollama server at %s (scripts/build-ollama.sh builds it from the pinned module; or set FINETUNE_OLLAMA)", bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	home := t.TempDir()
	s := &Server{Home: home, Models: o.Models, Log: filepath.Join(home, "serve.log"), Bin: bin}
	if s.Models == "" {
		s.Models = filepath.Join(home, "models")
	}
	logf, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if o.Wrap != nil {
		cmd = o.Wrap(bin, "serve")
	} else {
		cmd = exec.Command(bin, "serve")
	}
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+addr, "OLLAMA_MODELS="+s.Models, "HOME="+home,
		"OLLAMA_NUM_PARALLEL=1", "OLLAMA_MAX_LOADED_MODELS=2", "OLLAMA_NOPRUNE=1")
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its runners go with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		logf.Close()
		if t.Failed() {
			t.Logf("ollama serve log:\n%s", s.LogTail(4000))
		}
	})
	s.URL = &url.URL{Scheme: "http", Host: addr}
	s.Client = api.NewClient(s.URL, http.DefaultClient)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := s.Client.Version(ctx)
		cancel()
		if err == nil {
			t.Logf("ollama %s serving on %s", v, addr)
			return s
		}
		select {
		case <-exited:
			t.Fatalf("ollama serve exited: %s", s.LogTail(2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ollama serve did not answer within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LogTail is the last n bytes of the server's log.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.Log)
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}

// Create uploads model (and adapter, when not "") as blobs and creates a
// model from them with the plain template "{{ .Prompt }}".
func (s *Server) Create(t testing.TB, name, model, adapter string) {
	t.Helper()
	s.CreateWithParameters(t, name, model, adapter, nil)
}

// CreateWithParameters is Create with the model's default generation
// parameters (a Modelfile's PARAMETER lines: "num_thread": 1), which
// apply to requests that do not set them, such as those to /v1.
func (s *Server) CreateWithParameters(t testing.TB, name, model, adapter string, params map[string]any) {
	t.Helper()
	ctx := context.Background()
	blob := func(path string) string {
		sum, _, err := filehash.SHA256(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		d := "sha256:" + sum
		if err := s.Client.CreateBlob(ctx, d, f); err != nil {
			t.Fatalf("uploading %s: %v", path, err)
		}
		return d
	}
	req := &api.CreateRequest{Model: name, Files: map[string]string{filepath.Base(model): blob(model)}, Template: "{{ .Prompt }}", Parameters: params}
	if adapter != "" {
		req.Adapters = map[string]string{filepath.Base(adapter): blob(adapter)}
	}
	stream := false
	req.Stream = &stream
	if err := s.Client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}

// CreateChat creates a model from a GGUF file with its own chat template
// (Ollama reads it from the file) and the given default parameters, so
// that /api/chat and /v1 render conversations as the model expects.
func (s *Server) CreateChat(t testing.TB, name, model string, params map[string]any) {
	t.Helper()
	ctx := context.Background()
	sum, _, err := filehash.SHA256(model)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := "sha256:" + sum
	if err := s.Client.CreateBlob(ctx, d, f); err != nil {
		t.Fatalf("uploading %s: %v", model, err)
	}
	stream := false
	req := &api.CreateRequest{Model: name, Files: map[string]string{filepath.Base(model): d}, Parameters: params, Stream: &stream}
	if err := s.Client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}
