package filehash

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("abc"), 0o644)
	d, n, err := SHA256(p)
	if err != nil || n != 3 || d != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("SHA256 = %s, %d, %v", d, n, err)
	}
	if _, _, err := SHA256(p + ".missing"); err == nil {
		t.Fatal("no error for a missing file")
	}
}
