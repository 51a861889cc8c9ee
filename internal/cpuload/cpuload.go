// Package cpuload says how many threads the kernel is running right now,
// so that a thread pool whose workers spin while they wait for each other
// (ggml's) can take only the cores nobody else is using.
package cpuload

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
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
	n, ok := Runnable()
	if !ok {
		return limit
	}
	others := max(0, n-1)
	return max(1, min(limit, cores-others))
}
