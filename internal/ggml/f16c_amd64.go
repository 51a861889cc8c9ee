package ggml

import "golang.org/x/sys/cpu"

// hasF16C: golang.org/x/sys/cpu does not expose the F16C bit, so it is read
// from the kernel's list of CPU flags.
func hasF16C() bool { return cpu.X86.HasAVX && cpuinfoHas("f16c") }
