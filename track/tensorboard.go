package track

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"time"
)

// EventFile writes a TensorBoard event file: TFRecord framing (length,
// masked CRC-32C of the length, the record, masked CRC-32C of the record)
// around Event protocol buffers, encoded here by hand (tensorflow's
// event.proto and summary.proto; only the fields written are encoded).
// TensorBoard reads every file named *tfevents* under its --logdir, so a
// resumed run adds a second file to the same folder and the two read as
// one run.
type EventFile struct {
	Path string
	f    *os.File
	w    *bufio.Writer
}

// NewEventFile makes a new event file in dir, named as TensorFlow's
// writers name theirs, and writes its version record.
func NewEventFile(dir string) (*EventFile, error) {
	host, _ := os.Hostname()
	now := time.Now()
	name := fmt.Sprintf("events.out.tfevents.%d.%s.%d.finetune", now.Unix(), host, os.Getpid())
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	e := &EventFile{Path: f.Name(), f: f, w: bufio.NewWriter(f)}
	var ev []byte
	ev = appendDouble(ev, 1, wallTime(now))
	ev = appendBytes(ev, 3, []byte("brain.Event:2")) // file_version
	if err := e.record(ev); err != nil {
		f.Close()
		return nil, err
	}
	return e, e.w.Flush()
}

// Scalars writes one event holding a scalar per tag at step, and flushes
// it to the file (TensorBoard shows it at its next reload).
func (e *EventFile) Scalars(step int, when time.Time, values map[string]float64) error {
	var sum []byte
	for _, tag := range sortedKeys(values) {
		var v []byte
		v = appendBytes(v, 1, []byte(tag))
		v = appendFloat(v, 2, float32(values[tag])) // simple_value
		sum = appendBytes(sum, 1, v)
	}
	return e.summary(step, when, sum)
}

// Text writes a text summary (TensorBoard's Text tab renders it as
// Markdown) at step.
func (e *EventFile) Text(step int, when time.Time, tag, text string) error {
	var pluginData, meta, tensor, v []byte
	pluginData = appendBytes(pluginData, 1, []byte("text")) // plugin_name
	meta = appendBytes(meta, 1, pluginData)                 // SummaryMetadata.plugin_data
	tensor = appendVarintField(tensor, 1, 7)                // dtype: DT_STRING
	tensor = appendBytes(tensor, 2, nil)                    // tensor_shape: a scalar
	tensor = appendBytes(tensor, 8, []byte(text))           // string_val
	v = appendBytes(v, 1, []byte(tag))
	v = appendBytes(v, 8, tensor) // Value.tensor
	v = appendBytes(v, 9, meta)   // Value.metadata
	var sum []byte
	sum = appendBytes(sum, 1, v)
	return e.summary(step, when, sum)
}

func (e *EventFile) summary(step int, when time.Time, summary []byte) error {
	var ev []byte
	ev = appendDouble(ev, 1, wallTime(when))
	ev = appendVarintField(ev, 2, uint64(step))
	ev = appendBytes(ev, 5, summary)
	if err := e.record(ev); err != nil {
		return err
	}
	return e.w.Flush()
}

// Close closes the file.
func (e *EventFile) Close() error {
	if e.f == nil {
		return nil
	}
	err := e.w.Flush()
	if cerr := e.f.Close(); err == nil {
		err = cerr
	}
	e.f = nil
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's masked CRC-32C.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

func (e *EventFile) record(data []byte) error {
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], maskedCRC(head[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskedCRC(data))
	e.w.Write(head[:])
	e.w.Write(data)
	_, err := e.w.Write(tail[:])
	return err
}

func wallTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Protocol buffer wire format: a key is field<<3 | wire type.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	return appendVarint(appendVarint(b, uint64(field)<<3|0), v)
}

func appendDouble(b []byte, field int, v float64) []byte {
	return binary.LittleEndian.AppendUint64(appendVarint(b, uint64(field)<<3|1), math.Float64bits(v))
}

func appendFloat(b []byte, field int, v float32) []byte {
	return binary.LittleEndian.AppendUint32(appendVarint(b, uint64(field)<<3|5), math.Float32bits(v))
}

func appendBytes(b []byte, field int, v []byte) []byte {
	b = appendVarint(b, uint64(field)<<3|2)
	return append(appendVarint(b, uint64(len(v))), v...)
}
