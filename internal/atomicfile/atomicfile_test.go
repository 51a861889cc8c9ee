package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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

// TestNewStampedDir: folders made in the same second get -2, -3, and a
// folder that exists is never handed out again.
func TestNewStampedDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "runs")
	now := time.Date(2026, 12, 1, 20, 15, 2, 0, time.UTC)
	var got []string
	for range 3 {
		d, err := NewStampedDir(root, now)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(d))
	}
	want := []string{"20261201-201502", "20261201-201502-2", "20261201-201502-3"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("folders %v, want %v", got, want)
		}
	}
}
