package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
