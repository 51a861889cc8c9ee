package ggml

/*
#include <dlfcn.h>
#include <stdlib.h>
#include "capi.h"

// ft_dlopen_error opens and closes path the way ggml does (RTLD_NOW |
// RTLD_LOCAL) and returns the loader's error, or NULL when it opens.
static const char * ft_dlopen_error(const char * path) {
	void * h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	dlclose(h);
	return NULL;
}

static void ft_set_n_threads(void * fn, ggml_backend_t backend, int n) {
	((ggml_backend_set_n_threads_t) fn)(backend, n);
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Library is one backend library file LoadBackends found.
type Library struct {
	Path    string `json:"path"`
	Backend string `json:"backend,omitempty"` // the registry it added ("CUDA", "BLAS"); empty when not loaded
	Devices int    `json:"devices"`           // how many devices it brought
	Error   string `json:"error,omitempty"`   // why it was not loaded
	Warning string `json:"warning,omitempty"` // loaded, but something is wrong
}

var libraries struct {
	sync.Mutex
	dirs  map[string]bool
	names map[string]string // file name → path of the library loaded under that name
	list  []Library
}

// LoadBackends loads the ggml backend libraries (libggml-cuda.so,
// libggml-blas.so, ...) found in the given folders, in order; folders that
// do not exist are skipped. It returns the folders that were searched. Each
// folder is searched once per process, and a library file name already
// loaded from an earlier folder is not loaded again (the first one found
// wins, as on PATH): two copies of one backend would register its devices
// twice. CPU backend libraries (libggml-cpu*.so) are skipped, finetune's
// CPU backend is built in; so is libggml-base.so, the core is too.
//
// The libraries must resolve their ggml symbols against this executable
// (scripts/build-ggml-backend.sh builds them so, and this package links with
// -rdynamic): there is one ggml core and one backend registry per process.
// Libraries reports what happened to each file.
func LoadBackends(dirs []string) []string {
	libraries.Lock()
	defer libraries.Unlock()
	if libraries.dirs == nil {
		libraries.dirs, libraries.names = map[string]bool{}, map[string]string{}
	}
	var searched []string
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			continue
		}
		searched = append(searched, abs)
		if libraries.dirs[abs] {
			continue
		}
		libraries.dirs[abs] = true
		files, _ := filepath.Glob(filepath.Join(abs, "libggml-*.so"))
		sort.Strings(files)
		for _, f := range files {
			libraries.list = append(libraries.list, loadLibrary(f))
		}
	}
	return searched
}

// loadLibrary registers the backend in file f; libraries is locked.
func loadLibrary(f string) Library {
	lib := Library{Path: f}
	name := filepath.Base(f)
	switch {
	case strings.HasPrefix(name, "libggml-base"), strings.HasPrefix(name, "libggml-cpu"):
		lib.Error = "skipped: finetune has ggml's core and CPU backend built in"
		return lib
	case libraries.names[name] != "":
		lib.Error = "skipped: already loaded from " + libraries.names[name]
		return lib
	}
	cpath := C.CString(f)
	defer C.free(unsafe.Pointer(cpath))
	if msg := C.ft_dlopen_error(cpath); msg != nil {
		lib.Error = C.GoString(msg)
		if strings.Contains(lib.Error, "undefined symbol: ggml_") {
			lib.Error += " (built against a libggml-base.so, or this executable does not export ggml: use scripts/build-ggml-backend.sh)"
		}
		return lib
	}
	before := C.ggml_backend_dev_count()
	reg := C.ggml_backend_load(cpath)
	if reg == nil {
		lib.Error = "not loaded by ggml: not a ggml backend, of another ggml API version, or not supported on this machine" + lastError()
		return lib
	}
	libraries.names[name] = f
	lib.Backend = goString(C.ggml_backend_reg_name(reg))
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil && strings.Contains(string(maps), "/libggml-base") {
		lib.Warning = "a libggml-base library came with it: a second ggml core is in the process (build it with scripts/build-ggml-backend.sh)"
	}
	lib.Devices = int(C.ggml_backend_dev_count() - before)
	return lib
}

// lastError is ": " and the last warning or error ggml logged, or "".
func lastError() string {
	msgs := TakeMessages()
	if len(msgs) == 0 {
		return ""
	}
	return ": " + msgs[len(msgs)-1]
}

// Libraries lists every backend library file LoadBackends has come across,
// loaded or not.
func Libraries() []Library {
	libraries.Lock()
	defer libraries.Unlock()
	return append([]Library(nil), libraries.list...)
}

// libraryPath is the file the backend registry named reg was loaded from
// by LoadBackends ("" for a built-in one).
func libraryPath(reg string) string {
	libraries.Lock()
	defer libraries.Unlock()
	for _, l := range libraries.list {
		if l.Backend == reg {
			return l.Path
		}
	}
	return ""
}

// deviceTypes are the names NewDeviceBackend takes for "the first device of
// this type".
var deviceTypes = map[string]C.enum_ggml_backend_dev_type{
	"cpu":   C.GGML_BACKEND_DEVICE_TYPE_CPU,
	"gpu":   C.GGML_BACKEND_DEVICE_TYPE_GPU,
	"igpu":  C.GGML_BACKEND_DEVICE_TYPE_IGPU,
	"accel": C.GGML_BACKEND_DEVICE_TYPE_ACCEL,
}

// NewDeviceBackend starts a backend on a device: by its name as Devices
// lists it ("CUDA0", "BLAS", "CPU"; case does not matter), or by type
// ("gpu", "igpu", "accel", "cpu": the first device of that type). Load the
// backend libraries first (LoadBackends). Close it when done.
func NewDeviceBackend(name string) (*Backend, error) {
	var dev C.ggml_backend_dev_t
	if t, ok := deviceTypes[strings.ToLower(name)]; ok {
		dev = C.ggml_backend_dev_by_type(t)
	} else {
		cname := C.CString(name)
		dev = C.ggml_backend_dev_by_name(cname)
		C.free(unsafe.Pointer(cname))
	}
	if dev == nil {
		var names []string
		for _, d := range Devices() {
			names = append(names, d.Name)
		}
		return nil, fmt.Errorf("ggml: no device %q (devices: %s)", name, strings.Join(names, ", "))
	}
	b := C.ggml_backend_dev_init(dev, nil)
	if b == nil {
		return nil, fmt.Errorf("ggml: could not start a backend on device %s%s", goString(C.ggml_backend_dev_name(dev)), lastError())
	}
	return &Backend{c: b}, nil
}

// Name is the backend's name ("CPU", "CUDA0", "BLAS").
func (b *Backend) Name() string { return goString(C.ggml_backend_name(b.c)) }

// Device describes the device the backend runs on.
func (b *Backend) Device() Device { return deviceOf(C.ggml_backend_get_device(b.c)) }

// IsCPU reports whether the backend computes on the CPU device.
func (b *Backend) IsCPU() bool {
	return C.ggml_backend_dev_type(C.ggml_backend_get_device(b.c)) == C.GGML_BACKEND_DEVICE_TYPE_CPU
}

// setThreads sets the threads of any backend that has a thread count (CPU,
// BLAS); others ignore it.
func (b *Backend) setThreads(threads int) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	reg := C.ggml_backend_dev_backend_reg(C.ggml_backend_get_device(b.c))
	name := C.CString("ggml_backend_set_n_threads")
	fn := C.ggml_backend_reg_get_proc_address(reg, name)
	C.free(unsafe.Pointer(name))
	if fn != nil {
		C.ft_set_n_threads(fn, b.c, C.int(threads))
	}
}

// SupportsOp reports whether the backend can compute node t (a graph node,
// with its sources as they are). The scheduler runs a node its backend does
// not support on the next backend that does, the CPU last.
func (b *Backend) SupportsOp(t Tensor) bool { return bool(C.ggml_backend_supports_op(b.c, t.c)) }

// Synchronize waits for the backend's queued work to finish.
func (b *Backend) Synchronize() { C.ggml_backend_synchronize(b.c) }

// Unsupported lists, once each and in graph order, the ops ("MUL_MAT",
// "OUT_PROD", ...) of g's nodes that b cannot compute, with the types of
// their first two sources where they have them ("OUT_PROD(q8_0,f32)"):
// what would fall back to the CPU.
func (b *Backend) Unsupported(g Graph) []string {
	var out []string
	seen := map[string]bool{}
	for i := 0; i < g.Nodes(); i++ {
		n := g.Node(i)
		if b.SupportsOp(n) {
			continue
		}
		desc := n.Op()
		var types []string
		for j := 0; j < 2; j++ {
			if s := n.Src(j); s.Valid() {
				types = append(types, s.Type().String())
			}
		}
		if len(types) > 0 {
			desc += "(" + strings.Join(types, ",") + ")"
		}
		if !seen[desc] {
			seen[desc] = true
			out = append(out, desc)
		}
	}
	return out
}

// Node is the i-th node of the graph.
func (g Graph) Node(i int) Tensor { return Tensor{C.ggml_graph_node(g.c, C.int(i))} }

// Op is ggml's name of the operation that computes t ("MUL_MAT", "NONE"
// for a leaf; unary ops by their own name, "SILU").
func (t Tensor) Op() string { return C.GoString(C.ggml_op_desc(t.c)) }

// Src is the i-th source of t (the zero Tensor when it has none).
func (t Tensor) Src(i int) Tensor {
	if i < 0 || i >= C.GGML_MAX_SRC {
		return Tensor{}
	}
	return Tensor{t.c.src[i]}
}

// Buffer names the backend buffer holding t's data ("CPU", "CUDA0"; empty
// when t is not allocated).
func (t Tensor) BufferName() string {
	if t.c.buffer == nil {
		return ""
	}
	return goString(C.ggml_backend_buffer_name(t.c.buffer))
}

// Splits is how many pieces the scheduler cut the last graph into (a split
// is a run of nodes on one backend; inputs are copied between backends at
// each split).
func (s *Sched) Splits() int { return int(C.ggml_backend_sched_get_n_splits(s.c)) }

// Copies is how many copies of the graph inputs the scheduler keeps
// (pipeline parallelism; 1 without it).
func (s *Sched) Copies() int { return int(C.ggml_backend_sched_get_n_copies(s.c)) }

// TensorBackend is the backend the scheduler assigned node t to in the last
// graph it allocated (nil when it assigned none, as for views of
// preallocated tensors).
func (s *Sched) TensorBackend(t Tensor) *Backend {
	c := C.ggml_backend_sched_get_tensor_backend(s.c, t.c)
	if c == nil {
		return nil
	}
	for _, b := range s.owners {
		if b.c == c {
			return b
		}
	}
	return nil
}

// SetTensorBackend pins node t to backend b (one of the scheduler's) for
// the next allocation.
func (s *Sched) SetTensorBackend(t Tensor, b *Backend) {
	C.ggml_backend_sched_set_tensor_backend(s.c, t.c, b.c)
}

// Placement counts the nodes of g (allocated by s) that each backend runs,
// by backend name; nodes the scheduler left unassigned count under "".
func (s *Sched) Placement(g Graph) map[string]int {
	out := map[string]int{}
	for i := 0; i < g.Nodes(); i++ {
		name := ""
		if b := s.TensorBackend(g.Node(i)); b != nil {
			name = b.Name()
		}
		out[name]++
	}
	return out
}
