package lora

import "github.com/finetune-dev/finetune/internal/ggml"

// OpenDevice starts the backend of the device spec names (ggml.PickDevice:
// auto, cpu, cuda[:N] or a device's name) for the engine's graphs; nil for
// the CPU.
func OpenDevice(spec string) (*ggml.Backend, error) {
	name, err := ggml.PickDevice(spec)
	if err != nil || name == "" {
		return nil, err
	}
	return ggml.NewDeviceBackend(name)
}
