// Package cpuload says how many threads the kernel is running right now,
// so that a thread pool whose workers spin while they wait for each other
// (ggml's) can take only the cores nobody else is using.
package cpuload

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"time"
)

// Runnable is the number of threads running or ready to run on the whole
// machine at this instant (the caller's own included), from the
// procs_running line of /proc/stat; ok is false where that cannot be read.
func Runnable() (n int, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	return parseRunning(b)
}

func parseRunning(stat []byte) (int, bool) {
	for line := range bytes.Lines(stat) {
		rest, found := bytes.CutPrefix(line, []byte("procs_running "))
		if !found {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(rest)))
		return n, err == nil && n >= 0
	}
	return 0, false
}

// Threads is how many of at most limit threads a spinning pool should run
// now: the cores not taken by other runnable threads (the caller counted as
// one of its own), at least 1. limit <= 0 means every core.
func Threads(limit int) int {
	cores := runtime.NumCPU()
	if limit <= 0 || limit > cores {
		limit = cores
	}
	// Threads that run for an instant (the Go runtime's, the kernel's)
	// are not load: the fewest seen over a millisecond is.
	fewest := -1
	for i := range samples {
		if i > 0 {
			time.Sleep(sampleGap)
		}
		n, ok := Runnable()
		if !ok {
			return limit
		}
		if fewest < 0 || n < fewest {
			fewest = n
		}
	}
	others := max(0, fewest-1)
	return max(1, min(limit, cores-others))
}

const (
	samples   = 4
	sampleGap = 300 * time.Microsecond
)
