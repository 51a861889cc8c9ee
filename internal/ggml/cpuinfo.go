package ggml

import (
	"os"
	"strings"
	"sync"
)

var cpuFlags = sync.OnceValue(func() map[string]bool {
	flags := map[string]bool{}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return flags
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	return flags
})

func cpuinfoHas(flag string) bool { return cpuFlags()[flag] }
