package textfmt

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"one":                     "one",
		"  a\n\tb  c\r\n":         "a b c",
		"error: x\n  caused by y": "error: x caused by y",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShorten(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 5, "hello"},
		{"hello", 10, "hello"},
		{"hello world", 5, "hello…"},
		{"", 0, ""},
	} {
		if got := Shorten(c.in, c.n); got != c.want {
			t.Errorf("Shorten(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0:                "0 B",
		1023:             "1023 B",
		1024:             "1.0 KiB",
		1536:             "1.5 KiB",
		5 << 20:          "5.0 MiB",
		1<<30 - 1:        "1024.0 MiB",
		12*1<<30 + 1<<28: "12.2 GiB",
		3 << 40:          "3.0 TiB",
		1<<64 - 1:        "16.0 EiB",
	} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanFileSize(t *testing.T) {
	for n, want := range map[int64]string{
		-1:         "-1 B",
		0:          "0 B",
		1023:       "1023 B",
		1536:       "1.5 KiB",
		5 << 20:    "5.0 MiB",
		1<<30 - 1:  "1024.0 MiB",
		1 << 30:    "1.00 GiB",
		4521 << 20: "4.42 GiB",
		3 << 40:    "3072.00 GiB",
	} {
		if got := HumanFileSize(n); got != want {
			t.Errorf("HumanFileSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		if !IsTerminal(tty) {
			t.Error("/dev/tty is not a terminal")
		}
	}
}

func TestUSD(t *testing.T) {
	for c, want := range map[float64]string{0: "$0", 0.0012: "$0.0012", 0.5: "$0.50", 12.345: "$12.35"} {
		if got := USD(c); got != want {
			t.Errorf("USD(%g) = %q, want %q", c, got, want)
		}
	}
}
