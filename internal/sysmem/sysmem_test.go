package sysmem

import "testing"

func TestParse(t *testing.T) {
	in := []byte("MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   23000000 kB\n")
	if got := parse(in); got != 23000000*1024 {
		t.Fatalf("parse = %d", got)
	}
	if got := parse([]byte("MemTotal: 1 kB\n")); got != 0 {
		t.Fatalf("parse without MemAvailable = %d", got)
	}
}
