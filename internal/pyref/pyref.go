// Package pyref runs the Hugging Face reference peers of the tests and
// benchmarks: transformers, PEFT and TRL in PyTorch on the CPU, through the
// scripts in scripts/pyref, with the Python that scripts/install-pyref.sh
// installs. finetune itself never needs Python; a test that needs the
// references skips, loudly, when they are not installed.
package pyref

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/shared"
)

// InstallHint is what a skipped test says to do.
const InstallHint = "install them with scripts/install-pyref.sh (or set FINETUNE_PYTHON to a python that has torch, transformers, peft, trl and gguf)"

// Python returns the reference interpreter: $FINETUNE_PYTHON, else the
// python of scripts/install-pyref.sh's virtual environment
// ($FINETUNE_PYREF, else ~/.cache/finetune/pyref), or an error saying why
// there is none.
func Python() (string, error) {
	if p := os.Getenv("FINETUNE_PYTHON"); p != "" {
		return p, nil
	}
	venv, err := Venv("FINETUNE_PYREF", "pyref")
	if err != nil {
		return "", err
	}
	p := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(filepath.Join(venv, ".pins")); err != nil {
		return "", fmt.Errorf("no reference environment at %s", venv)
	}
	return p, nil
}

// Venv is the folder of one of the scripts' virtual environments: $ENV,
// else $XDG_CACHE_HOME/finetune/NAME, else ~/.cache/finetune/NAME.
func Venv(env, name string) (string, error) {
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "finetune", name), nil
}

// Script returns the path of scripts/pyref/NAME in this checkout.
func Script(name string) (string, error) {
	root := shared.ModuleRoot()
	if root == "" {
		return "", fmt.Errorf("no module root above the working folder")
	}
	p := filepath.Join(root, "scripts", "pyref", name)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// Need returns the reference python and the path of the peer script,
// skipping the test loudly when they are not there.
func Need(tb testing.TB) (python, script string) {
	tb.Helper()
	py, err := Python()
	if err != nil {
		tb.Skipf("SKIPPED: the Hugging Face references (torch, transformers, peft) are not installed: %v; %s", err, InstallHint)
	}
	sc, err := Script("peer.py")
	if err != nil {
		tb.Skipf("SKIPPED: scripts/pyref/peer.py not found: %v", err)
	}
	return py, sc
}

// NeedModules is Need for a test that also needs the Python packages
// modules (e.g. "trl"), skipping it loudly where the reference environment
// predates them (found without importing them).
func NeedModules(tb testing.TB, modules ...string) (python, script string) {
	tb.Helper()
	py, sc := Need(tb)
	args := append([]string{"-c", "import importlib.util, sys; missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]; print(*missing); sys.exit(1 if missing else 0)"}, modules...)
	if out, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		tb.Skipf("SKIPPED: %s lacks %s (%v); %s", py, strings.TrimSpace(string(out)), err, InstallHint)
	}
	return py, sc
}

// Run writes jobs as JSON and has peer.py do them in one process (one
// torch thread unless threads says otherwise), failing the test with the
// script's output if it fails.
func Run(tb testing.TB, jobs []map[string]any) {
	tb.Helper()
	py, sc := Need(tb)
	f := filepath.Join(tb.TempDir(), "jobs.json")
	b, err := json.Marshal(jobs)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(f, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(py, sc, f)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES=", "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error", "PYTHONWARNINGS=ignore")
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", py, sc, err, tail(out.String(), 4000))
	}
	tb.Logf("Hugging Face reference (%d jobs) took %.1fs", len(jobs), time.Since(start).Seconds())
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

// ReadLogits reads the [T][V] F32 logits a "logits" job wrote.
func ReadLogits(tb testing.TB, path string, T int) [][]float32 {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b)%(4*T) != 0 {
		tb.Fatalf("%s: %d bytes is not %d rows of F32", path, len(b), T)
	}
	V := len(b) / 4 / T
	out := make([][]float32, T)
	for t := range out {
		out[t] = make([]float32, V)
		for v := range out[t] {
			out[t][v] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*(t*V+v):]))
		}
	}
	return out
}

// MaxAbsDiff is the largest |a-b| over two [T][V] arrays of equal shape.
func MaxAbsDiff(tb testing.TB, a, b [][]float32) float64 {
	tb.Helper()
	if len(a) != len(b) {
		tb.Fatalf("%d rows against %d", len(a), len(b))
	}
	d := 0.0
	for i := range a {
		if len(a[i]) != len(b[i]) {
			tb.Fatalf("row %d: %d values against %d", i, len(a[i]), len(b[i]))
		}
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j])-float64(b[i][j])))
		}
	}
	return d
}
