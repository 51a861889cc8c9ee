// Package textfmt formats text for people: error messages on one line,
// clipped strings, byte counts, and whether output goes to a terminal.
package textfmt

import (
	"fmt"
	"os"
	"strings"
)

// OneLine joins the words of s with single spaces: line breaks and runs of
// white space become one space, and leading and trailing space goes.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Shorten returns s when it is at most n bytes long, else its first n
// bytes followed by "…".
func Shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// HumanBytes writes a byte count in binary units with one decimal: "512 B",
// "1.5 KiB", "12.3 GiB", up to EiB.
func HumanBytes(n uint64) string {
	return humanBytes(n, 1, len(units))
}

// HumanFileSize writes a file size as HumanBytes does up to MiB, and from
// 1 GiB up in GiB with two decimals, so that an upload of a few GiB shows
// its progress: "1.5 MiB", "4.21 GiB", "1536.00 GiB". A negative size is
// written as a number of bytes.
func HumanFileSize(n int64) string {
	if n < 0 {
		return fmt.Sprintf("%d B", n)
	}
	return humanBytes(uint64(n), 2, 3)
}

// units are the binary prefixes of KiB to EiB.
const units = "KMGTPE"

// humanBytes writes n in the largest unit it reaches of the first top
// units, with one decimal, and with topDecimals in the topmost unit.
func humanBytes(n uint64, topDecimals, top int) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp+1 < top; m /= unit {
		div *= unit
		exp++
	}
	decimals := 1
	if exp == top-1 {
		decimals = topDecimals
	}
	return fmt.Sprintf("%.*f %ciB", decimals, float64(n)/float64(div), units[exp])
}

// USD is a dollar amount as reports show it: "$0", four decimals below a
// cent, else two.
func USD(c float64) string {
	switch {
	case c == 0:
		return "$0"
	case c < 0.01:
		return fmt.Sprintf("$%.4f", c)
	}
	return fmt.Sprintf("$%.2f", c)
}

// IsTerminal reports whether f is a terminal (a character device), where
// output may redraw lines and use colour.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
