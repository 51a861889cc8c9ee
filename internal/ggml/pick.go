package ggml

import (
	"fmt"
	"strconv"
	"strings"
)

// OpenDevice starts the backend of the device spec names, for the engine's
// graphs (load the backend libraries first: LoadBackends):
//
//   - "" or "auto": the first GPU ggml knows, else none (the CPU);
//   - "cpu": none;
//   - "cuda", "cuda:N" (also "rocm", "vulkan", "metal"): that backend's
//     N-th device (0 by default);
//   - any other: a device by ggml's own name ("CUDA1", "BLAS").
//
// It returns the device's name, "" for the CPU, and a one-line error
// naming the devices there are when the one asked for is absent.
func PickDevice(spec string) (string, error) {
	devs := Devices()
	s := strings.ToLower(strings.TrimSpace(spec))
	switch s {
	case "cpu":
		return "", nil
	case "", "auto":
		for _, d := range devs {
			if d.Type == DeviceGPU {
				return d.Name, nil
			}
		}
		return "", nil
	}
	kind, idx, hasIdx := strings.Cut(s, ":")
	registry := map[string]string{"cuda": "CUDA", "rocm": "ROCm", "hip": "ROCm", "vulkan": "Vulkan", "metal": "Metal"}[kind]
	if registry == "" {
		for _, d := range devs {
			if strings.EqualFold(d.Name, spec) {
				return d.Name, nil
			}
		}
		return "", fmt.Errorf("device %q: no such device (there are %s); use auto, cpu, cuda[:N] or a device's name", spec, deviceNames(devs))
	}
	n := 0
	if hasIdx {
		var err error
		if n, err = strconv.Atoi(idx); err != nil || n < 0 {
			return "", fmt.Errorf("device %q: %q is not a device number", spec, idx)
		}
	}
	k := 0
	for _, d := range devs {
		if !strings.EqualFold(d.Backend, registry) {
			continue
		}
		if k == n {
			return d.Name, nil
		}
		k++
	}
	hint := "build its backend library (make cuda) beside the binary, or set FINETUNE_LIB_PATH"
	if k > 0 {
		hint = fmt.Sprintf("there are %d %s devices, numbered from 0", k, registry)
	}
	return "", fmt.Errorf("device %q: no %s device %d (there are %s): %s", spec, registry, n, deviceNames(devs), hint)
}

func deviceNames(devs []Device) string {
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
