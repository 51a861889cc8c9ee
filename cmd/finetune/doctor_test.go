package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestDoctorBackendLibraries: doctor reports each backend library file it
// found, loaded or not and why, and the devices a loaded one brought.
func TestDoctorBackendLibraries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libggml-broken.so"), []byte("not an ELF file"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "libggml-cpu-haswell.so"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The BLAS backend, when one was built (make blas).
	blas := ""
	for _, d := range append(filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH")), filepath.Join("..", "..", "bin", "lib")) {
		if b, err := os.ReadFile(filepath.Join(d, "libggml-blas.so")); err == nil && d != "" {
			blas = filepath.Join(dir, "libggml-blas.so")
			if err := os.WriteFile(blas, b, 0o755); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	t.Setenv("FINETUNE_LIB_PATH", dir)
	r := cli(t, "doctor", "--json")
	if r.code != 0 || r.signal != "" {
		t.Fatalf("doctor: exit %d %s\n%s", r.code, r.signal, r.stderr)
	}
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	libs := map[string]string{}
	for _, l := range rep.Libraries {
		libs[filepath.Base(l.Path)] = l.Backend + "|" + l.Error
	}
	if !strings.Contains(libs["libggml-broken.so"], "|/") {
		t.Errorf("broken library: %q, want the loader's error", libs["libggml-broken.so"])
	}
	if !strings.Contains(libs["libggml-cpu-haswell.so"], "skipped") {
		t.Errorf("CPU library: %q, want skipped", libs["libggml-cpu-haswell.so"])
	}
	if blas == "" {
		t.Log("no libggml-blas.so built (make blas): its device is not checked")
		return
	}
	if libs["libggml-blas.so"] != "BLAS|" {
		t.Errorf("libggml-blas.so: %q, want loaded as BLAS", libs["libggml-blas.so"])
	}
	found := false
	for _, d := range rep.Devices {
		found = found || (d.Name == "BLAS" && d.Path == blas)
	}
	if !found {
		t.Errorf("devices %+v: want BLAS from %s", rep.Devices, blas)
	}
	text := cli(t, "doctor")
	if !strings.Contains(text.stdout, "libggml-blas.so      loaded: BLAS, 1 device(s)") || !strings.Contains(text.stdout, "libggml-broken.so    not loaded: ") {
		t.Errorf("doctor's text does not list the libraries:\n%s", text.stdout)
	}
}

// TestMakeBuildEmbedsLlamaCommitOnAFreshMachine: `make build` on a machine
// whose Go module cache is empty (nothing downloaded yet) still links the
// llama.cpp commit in, for doctor to show. The ollama module is fetched
// from this machine's own cache (a file:// proxy) into an empty one, so
// the test needs no network; `make -n` prints the build command without
// compiling anything.
func TestMakeBuildEmbedsLlamaCommitOnAFreshMachine(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("SKIPPED: no make on this machine")
	}
	root := shared.ModuleRoot()
	if root == "" {
		t.Fatal("no module root")
	}
	goenv := func(key string) string {
		out, err := exec.Command("go", "env", key).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", key, err)
		}
		return strings.TrimSpace(string(out))
	}
	cache := goenv("GOMODCACHE")
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ollama/ollama").Output()
	if err != nil || strings.TrimSpace(string(dir)) == "" {
		t.Skipf("SKIPPED: the ollama module is not in this machine's module cache (%v)", err)
	}
	sync, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "Makefile.sync"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FETCH_HEAD=(\S+)`).FindSubmatch(sync)
	if m == nil {
		t.Fatal("the ollama module's Makefile.sync names no FETCH_HEAD")
	}
	want := string(m[1])

	fresh := t.TempDir()
	cmd := exec.Command("make", "-n", "build")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOMODCACHE="+fresh, "GOPROXY=file://"+filepath.Join(cache, "cache", "download"),
		"GOFLAGS="+goenv("GOFLAGS")+" -modcacherw", "GOSUMDB=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, out)
	}
	got := regexp.MustCompile(`-X main\.llamaCommit=(\S*)`).FindSubmatch(out)
	if got == nil {
		t.Fatalf("make -n build sets no main.llamaCommit:\n%s", out)
	}
	if string(got[1]) != want {
		t.Fatalf("with an empty module cache, make build links llamaCommit=%q, want %q:\n%s", got[1], want, out)
	}
}
