// Package shared finds the material beside the checkout that tests and
// benchmarks use (real models, tokenizer test vectors): the folder named by
// $FINETUNE_SHARED, else shared/ beside the module root.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared folder, or "" when there is none.
func Dir() string {
	if d := os.Getenv("FINETUNE_SHARED"); d != "" {
		return d
	}
	root := ModuleRoot()
	if root == "" {
		return ""
	}
	d := filepath.Join(filepath.Dir(root), "shared")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// ModuleRoot is the folder holding go.mod, found from the working folder
// (a test's package folder) upwards, or "".
func ModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Path returns the path of a file under the shared folder ("models/x.gguf"),
// skipping the test, loudly, when it is not there.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	d := Dir()
	if d == "" {
		tb.Skipf("SKIPPED: no shared folder (set FINETUNE_SHARED or put shared/ beside the checkout); %s is needed", rel)
	}
	p := filepath.Join(d, rel)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("SKIPPED: %s is missing from the shared folder %s", rel, d)
	}
	return p
}
