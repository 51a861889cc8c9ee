package ggml

import "fmt"

// Decode converts rows of type t (nPerRow values a row) to float32 with
// ggml's own dequantization, on the CPU.
func Decode(t Type, data []byte, nPerRow int) ([]float32, error) {
	if nPerRow <= 0 || t.RowSize(nPerRow) == 0 || len(data)%t.RowSize(nPerRow) != 0 {
		return nil, fmt.Errorf("ggml: %d bytes are not whole rows of %d %s values", len(data), nPerRow, t)
	}
	rows := len(data) / t.RowSize(nPerRow)
	be, err := NewCPUBackend(0)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	in, err := NewCtx(4*TensorOverhead(), true)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	src := in.New2D(t, nPerRow, rows)
	buf, err := in.AllocTensors(be)
	if err != nil {
		return nil, err
	}
	defer buf.Close()
	src.SetBytes(data)
	if t == TypeF32 {
		return src.GetF32(nil), nil
	}
	x, err := NewCtx(8*TensorOverhead()+GraphOverhead(8, false), true)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	out := x.Cast(src, TypeF32)
	out.SetOutput()
	g := x.NewGraph(8, false)
	g.Expand(out)
	s, err := NewSched([]*Backend{be}, 8)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.Alloc(g); err != nil {
		return nil, err
	}
	if err := s.Compute(g); err != nil {
		return nil, err
	}
	return out.GetF32(nil), nil
}
