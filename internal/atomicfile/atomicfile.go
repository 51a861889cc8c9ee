// Package atomicfile writes files that users keep (reports, metadata, cache
// entries) so that a reader, or a crash, sees the old file or the new one,
// never a part; and makes the folders they go in without ever taking one
// another process made.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Write writes data to a temporary file beside path, syncs it and renames
// it over path, making the folder first.
func Write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// NewStampedDir makes a new folder in root (made when missing) named for
// the time now (20060102-150405), or with -2, -3, … when that name is
// taken: exclusively, so two processes starting in the same second get
// two folders. It returns the folder's absolute path.
func NewStampedDir(root string, now time.Time) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	stamp := now.Format("20060102-150405")
	for i := 1; i <= 1000; i++ {
		p := filepath.Join(abs, stamp)
		if i > 1 {
			p = fmt.Sprintf("%s-%d", p, i)
		}
		err := os.Mkdir(p, 0o755)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: no free folder name for %s", abs, stamp)
}
