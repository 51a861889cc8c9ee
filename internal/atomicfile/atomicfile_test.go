package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "report.json")
	if err := Write(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	entries, _ := os.ReadDir(filepath.Dir(p))
	if string(b) != "two" || len(entries) != 1 {
		t.Fatalf("content %q, %d files in the folder", b, len(entries))
	}
	// A folder in the way: the error names the path and nothing is left.
	bad := filepath.Join(dir, "sub")
	if err := Write(bad, []byte("x")); err == nil {
		t.Fatal("wrote over a folder")
	}
	if entries, _ := os.ReadDir(bad); len(entries) != 1 {
		t.Fatalf("a temp file was left behind: %v", entries)
	}
}
