package adapters

// This file holds the safetensors codec of PEFT adapter weights: F32
// tensors written, F32, F16 and BF16 tensors read as float32.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/finetune-dev/finetune/internal/ggml"
	"github.com/finetune-dev/finetune/internal/gguf"
)

// stTensor is an F32 tensor to write to a safetensors file, with its torch
// shape.
type stTensor struct {
	name  string
	shape []int
	data  []float32
}

// encodeSafetensors returns a safetensors file holding tensors in name
// order: an 8-byte little-endian header length, the JSON header (each
// tensor's dtype, shape and data_offsets, relative to the data that follows
// it) padded with spaces to a multiple of 8 bytes, and the tensors' data.
func encodeSafetensors(tensors []stTensor) []byte {
	tensors = slices.Clone(tensors)
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].name < tensors[j].name })
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, t := range tensors {
		begin := len(data)
		data = append(data, gguf.F32Data(t.data)...)
		header[t.name] = map[string]any{"dtype": "F32", "shape": t.shape, "data_offsets": []int{begin, len(data)}}
	}
	h, _ := json.Marshal(header) // maps of strings, ints and slices always encode
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	return append(out, data...)
}

// stValue is a tensor read from a safetensors file, converted to float32.
type stValue struct {
	shape []int
	data  []float32
}

// stTypes are the safetensors dtypes ImportPEFT reads.
var stTypes = map[string]struct {
	t    ggml.Type
	size int
}{"F32": {ggml.TypeF32, 4}, "F16": {ggml.TypeF16, 2}, "BF16": {ggml.TypeBF16, 2}}

// readSafetensors reads every tensor of a safetensors file as float32.
func readSafetensors(path string) (map[string]stValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a safetensors file", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the file (%d bytes): not a safetensors file, or truncated", path, n, len(b))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		return nil, fmt.Errorf("%s: bad safetensors header: %v", path, err)
	}
	data := b[8+n:]
	out := map[string]stValue{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: bad header entry: %v", path, name, err)
		}
		st, ok := stTypes[e.Dtype]
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s is %s; finetune reads F32, F16 and BF16 (save the adapter unquantized)", path, name, e.Dtype)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || d > 0 && count > int64(len(data))/int64(d) {
				return nil, fmt.Errorf("%s: tensor %s has shape %v, which the file cannot hold (corrupt file?)", path, name, e.Shape)
			}
			count *= int64(d)
		}
		begin, end := e.Offsets[0], e.Offsets[1]
		if begin < 0 || end < begin || end > int64(len(data)) || end-begin != count*int64(st.size) {
			return nil, fmt.Errorf("%s: tensor %s: data_offsets %v do not hold a %s tensor of shape %v inside the %d data bytes (corrupt file?)", path, name, e.Offsets, e.Dtype, e.Shape, len(data))
		}
		v := stValue{shape: e.Shape, data: gguf.F32Values(data[begin:end])}
		if st.t != ggml.TypeF32 && count > 0 {
			if v.data, err = ggml.Decode(st.t, data[begin:end], int(count)); err != nil {
				return nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
			}
		}
		out[name] = v
	}
	return out, nil
}
