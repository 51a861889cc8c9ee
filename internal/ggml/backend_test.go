package ggml

import (
	"github.com/finetune-dev/finetune/internal/ggmltest"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// blasLibrary finds libggml-blas.so, or skips the test, loudly.
func blasLibrary(t *testing.T) string { return ggmltest.BLAS(t) }

func fileExists(f string) bool {
	st, err := os.Stat(f)
	return err == nil && st.Mode().IsRegular()
}

// trainStep is one forward and backward pass of a small two-layer graph
// (mul_mat, add, silu, rms_norm, mul, mul_mat, cross-entropy) computed by a
// scheduler over backends, the weights and inputs in a buffer of backend
// weights.
type trainStep struct {
	loss, logits, gradW1, gradW2, gradB []float32
	splits                              int
	placement                           map[string]int
	nodeBackend                         map[string]string // first node of each op → backend name
	unsupported                         []string          // ops the first backend cannot run
}

func runTrainStep(t *testing.T, backends []*Backend, weights *Backend) trainStep {
	t.Helper()
	const nIn, nHid, nOut, nTok = 64, 48, 40, 36
	rng := rand.New(rand.NewPCG(7, 8))
	randv := func(k int, scale float64) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		return v
	}
	wctx, err := NewCtx(16*TensorOverhead(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer wctx.Close()
	w1 := wctx.New2D(TypeF32, nIn, nHid).SetName("w1")
	w2 := wctx.New2D(TypeF32, nHid, nOut).SetName("w2")
	bias := wctx.New1D(TypeF32, nHid).SetName("bias")
	norm := wctx.New1D(TypeF32, nHid).SetName("norm")
	x := wctx.New2D(TypeF32, nIn, nTok).SetName("x")
	labels := wctx.New2D(TypeF32, nOut, nTok).SetName("labels")
	for _, p := range []Tensor{w1, w2, bias} {
		p.SetParam()
	}
	buf, err := wctx.AllocTensors(weights)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	w1.SetF32(randv(nIn*nHid, 0.2))
	w2.SetF32(randv(nHid*nOut, 0.2))
	bias.SetF32(randv(nHid, 0.1))
	norm.SetF32(randv(nHid, 1))
	x.SetF32(randv(nIn*nTok, 1))
	lab := make([]float32, nOut*nTok)
	for i := 0; i < nTok; i++ {
		lab[i*nOut+rng.IntN(nOut)] = 1
	}
	labels.SetF32(lab)

	gctx, err := NewCtx(1024*TensorOverhead()+GraphOverhead(1024, true), true)
	if err != nil {
		t.Fatal(err)
	}
	defer gctx.Close()
	h := gctx.SiLU(gctx.Add(gctx.MulMat(w1, x), bias))            // [nHid, nTok]
	h = gctx.Mul(gctx.RMSNorm(h, 1e-5), norm)                     // [nHid, nTok]
	logits := gctx.MulMat(w2, h).SetName("logits")                // [nOut, nTok]
	loss := gctx.CrossEntropyLoss(logits, labels).SetName("loss") // scalar
	logits.SetOutput()
	loss.SetOutput()
	loss.SetLoss()
	g := gctx.NewGraph(1024, true)
	g.Expand(loss)
	g.BuildBackward(gctx)
	g.KeepInputsOf("RMS_NORM_BACK", "SOFT_MAX_BACK")
	seed := g.Grad(loss)
	seed.SetInput()
	for _, p := range []Tensor{w1, w2, bias} {
		g.Grad(p).SetOutput()
	}

	s, err := NewSched(backends, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		t.Fatal(err)
	}
	seed.SetF32([]float32{1})
	if err := s.Compute(g); err != nil {
		t.Fatal(err)
	}
	r := trainStep{
		loss: loss.GetF32(nil), logits: logits.GetF32(nil),
		gradW1: g.Grad(w1).GetF32(nil), gradW2: g.Grad(w2).GetF32(nil), gradB: g.Grad(bias).GetF32(nil),
		splits: s.Splits(), placement: s.Placement(g), nodeBackend: map[string]string{},
		unsupported: backends[0].Unsupported(g),
	}
	for i := 0; i < g.Nodes(); i++ {
		n := g.Node(i)
		if _, ok := r.nodeBackend[n.Op()]; ok {
			continue
		}
		if b := s.TensorBackend(n); b != nil {
			r.nodeBackend[n.Op()] = b.Name()
		}
	}
	return r
}

// maxRelDiff is the largest |a-b| over the vectors, relative to b's largest
// magnitude.
func maxRelDiff(a, b []float32) float64 {
	scale, worst := 1e-12, 0.0
	for i := range b {
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	return worst / scale
}

// TestBLASBackend loads ggml's BLAS backend library (built from the ollama
// module's sources without libggml-base.so) into this process, whose ggml
// core is linked statically: its device joins the one registry, and a
// scheduler over [BLAS, CPU] splits a training step across the two with the
// values of the CPU alone.
func TestBLASBackend(t *testing.T) {
	lib := blasLibrary(t)
	LoadBackends([]string{filepath.Dir(lib)})
	var loaded *Library
	for _, l := range Libraries() {
		if filepath.Base(l.Path) == "libggml-blas.so" && l.Backend != "" {
			loaded = &l
		}
	}
	if loaded == nil {
		t.Fatalf("libggml-blas.so did not load: %+v", Libraries())
	}
	if loaded.Backend != "BLAS" || loaded.Devices != 1 {
		t.Errorf("loaded %+v, want the BLAS backend with one device", *loaded)
	}
	var names []string
	found := false
	for _, d := range Devices() {
		names = append(names, d.Name)
		if d.Name == "BLAS" && d.Backend == "BLAS" && d.Type == DeviceAccel {
			found = true
		}
	}
	if !found {
		t.Fatalf("Devices() = %v, want a BLAS accelerator", names)
	}
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil && strings.Contains(string(maps), "libggml-base") {
		t.Error("a libggml-base library is mapped into the process: a second ggml core")
	}
	cpus := 0
	for _, b := range Backends() {
		if b == "CPU" {
			cpus++
		}
	}
	if cpus != 1 {
		t.Errorf("Backends() = %v: want exactly one CPU registry", Backends())
	}

	blas, err := NewDeviceBackend("BLAS")
	if err != nil {
		t.Fatal(err)
	}
	defer blas.Close()
	if blas.Name() != "BLAS" || blas.IsCPU() || blas.Device().Type != DeviceAccel {
		t.Errorf("backend %q (cpu %v, device %+v), want BLAS on an accelerator", blas.Name(), blas.IsCPU(), blas.Device())
	}
	blas.SetThreads(1)
	if byType, err := NewDeviceBackend("accel"); err != nil || byType.Name() != "BLAS" {
		t.Errorf("NewDeviceBackend(accel): %v, %v", byType, err)
	} else {
		byType.Close()
	}
	if _, err := NewDeviceBackend("CUDA7"); err == nil || !strings.Contains(err.Error(), "BLAS") {
		t.Errorf("NewDeviceBackend(CUDA7): %v, want an error listing the devices", err)
	}
	cpu, err := NewCPUBackend(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	if cpu.Name() != "CPU" || !cpu.IsCPU() {
		t.Errorf("CPU backend named %q, cpu %v", cpu.Name(), cpu.IsCPU())
	}
	if _, err := NewSched([]*Backend{cpu, blas}, 16); err == nil {
		t.Error("NewSched accepted a scheduler without the CPU backend last")
	}

	ref := runTrainStep(t, []*Backend{cpu}, cpu)
	got := runTrainStep(t, []*Backend{blas, cpu}, cpu)
	t.Logf("CPU alone: %d split(s), nodes %v", ref.splits, ref.placement)
	t.Logf("BLAS+CPU: %d splits, nodes %v, first node of each op on %v", got.splits, got.placement, got.nodeBackend)
	t.Logf("BLAS cannot run: %s", strings.Join(got.unsupported, " "))
	if ref.splits != 1 || ref.placement["CPU"] == 0 {
		t.Errorf("CPU alone: %d splits, placement %v", ref.splits, ref.placement)
	}
	if got.splits < 2 || got.placement["BLAS"] == 0 || got.placement["CPU"] == 0 {
		t.Errorf("BLAS+CPU: %d splits, placement %v: the graph did not split across the two", got.splits, got.placement)
	}
	if got.nodeBackend["MUL_MAT"] != "BLAS" || got.nodeBackend["CROSS_ENTROPY_LOSS"] != "CPU" {
		t.Errorf("nodes ran on %v: want MUL_MAT on BLAS, CROSS_ENTROPY_LOSS on the CPU", got.nodeBackend)
	}
	if !strings.Contains(strings.Join(got.unsupported, " "), "CROSS_ENTROPY_LOSS") {
		t.Errorf("Unsupported(BLAS) = %v: it should list CROSS_ENTROPY_LOSS", got.unsupported)
	}
	for _, c := range []struct {
		name     string
		got, ref []float32
	}{{"loss", got.loss, ref.loss}, {"logits", got.logits, ref.logits}, {"grad w1", got.gradW1, ref.gradW1}, {"grad w2", got.gradW2, ref.gradW2}, {"grad bias", got.gradB, ref.gradB}} {
		d := maxRelDiff(c.got, c.ref)
		t.Logf("%s: max difference %.2e of its largest value", c.name, d)
		if d > 1e-4 || math.IsNaN(d) {
			t.Errorf("%s: BLAS+CPU differs from the CPU by %.2e of its largest value", c.name, d)
		}
	}
}

// TestGPUBackends runs the training step of TestBLASBackend on every GPU
// the backend libraries in FINETUNE_LIB_PATH bring (make cuda), weights in
// the GPU's memory, and compares it with the CPU. Without a GPU it skips.
func TestGPUBackends(t *testing.T) {
	LoadBackends(filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH")))
	var gpus []Device
	for _, d := range Devices() {
		if d.Type == DeviceGPU || d.Type == DeviceIGPU {
			gpus = append(gpus, d)
		}
	}
	if len(gpus) == 0 {
		t.Skipf("no GPU device (libraries %+v)", Libraries())
	}
	cpu, err := NewCPUBackend(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	ref := runTrainStep(t, []*Backend{cpu}, cpu)
	for _, d := range gpus {
		t.Run(d.Name, func(t *testing.T) {
			gpu, err := NewDeviceBackend(d.Name)
			if err != nil {
				t.Fatal(err)
			}
			defer gpu.Close()
			t.Logf("%s: %s, %d of %d bytes free, compute %d.%d, from %s", d.Name, d.Description, d.MemoryFree, d.MemoryTotal, d.ComputeMajor, d.ComputeMinor, d.Path)
			got := runTrainStep(t, []*Backend{gpu, cpu}, gpu)
			t.Logf("%s+CPU: %d splits, nodes %v; %s cannot run: %v", d.Name, got.splits, got.placement, d.Name, got.unsupported)
			if got.placement[gpu.Name()] == 0 {
				t.Errorf("no node ran on %s: %v", d.Name, got.placement)
			}
			for _, c := range []struct {
				name     string
				got, ref []float32
			}{{"loss", got.loss, ref.loss}, {"logits", got.logits, ref.logits}, {"grad w1", got.gradW1, ref.gradW1}, {"grad w2", got.gradW2, ref.gradW2}, {"grad bias", got.gradB, ref.gradB}} {
				diff := maxRelDiff(c.got, c.ref)
				t.Logf("%s: max difference %.2e of its largest value", c.name, diff)
				if diff > 1e-3 || math.IsNaN(diff) {
					t.Errorf("%s: %s differs from the CPU by %.2e of its largest value", c.name, d.Name, diff)
				}
			}
		})
	}
}

// BenchmarkMulMatBLAS times one 2048x2048 by 2048x256 F32 matrix product
// on the CPU backend alone and through the BLAS backend (2 threads each):
//
//	flock /tmp/heavy.lock go test -run - -bench MulMatBLAS ./internal/ggml
func BenchmarkMulMatBLAS(b *testing.B) {
	lib := ""
	for _, d := range append(filepath.SplitList(os.Getenv("FINETUNE_LIB_PATH")), filepath.Join("..", "..", "bin", "lib")) {
		if f := filepath.Join(d, "libggml-blas.so"); d != "" && fileExists(f) {
			lib = f
		}
	}
	if lib == "" {
		b.Skip("no libggml-blas.so: make blas")
	}
	LoadBackends([]string{filepath.Dir(lib)})
	cpu, err := NewCPUBackend(2)
	if err != nil {
		b.Fatal(err)
	}
	defer cpu.Close()
	blas, err := NewDeviceBackend("BLAS")
	if err != nil {
		b.Fatal(err)
	}
	defer blas.Close()
	blas.SetThreads(2)
	const K, M, N = 2048, 2048, 256
	for _, c := range []struct {
		name     string
		backends []*Backend
	}{{"CPU", []*Backend{cpu}}, {"BLAS", []*Backend{blas, cpu}}} {
		b.Run(c.name, func(b *testing.B) {
			x, _ := NewCtx(8*TensorOverhead(), true)
			defer x.Close()
			w, in := x.New2D(TypeF32, K, M), x.New2D(TypeF32, K, N)
			buf, err := x.AllocTensors(cpu)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			v := make([]float32, K*M)
			for i := range v {
				v[i] = float32(i%7) * 0.01
			}
			w.SetF32(v)
			in.SetF32(v[:K*N])
			g, _ := NewCtx(16*TensorOverhead()+GraphOverhead(16, false), true)
			defer g.Close()
			y := g.MulMat(w, in)
			graph := g.NewGraph(16, false)
			graph.Expand(y)
			s, err := NewSched(c.backends, 16)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Alloc(graph); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Compute(graph); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*K*M*N*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.Logf("%s: placement %v", c.name, s.Placement(graph))
		})
	}
}
