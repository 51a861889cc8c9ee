package cpuload

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestParseRunning(t *testing.T) {
	stat := []byte("cpu  1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\n")
	if n, ok := parseRunning(stat); !ok || n != 3 {
		t.Fatalf("parseRunning = %d, %v; want 3, true", n, ok)
	}
	if _, ok := parseRunning([]byte("cpu 1 2 3\n")); ok {
		t.Fatal("a /proc/stat without procs_running parsed")
	}
}

// TestThreadsStepAside: with every core busy with other threads, Threads
// gives one.
func TestThreadsStepAside(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat on this system: Threads always gives the limit")
	}
	cores := runtime.NumCPU()
	if cores < 2 {
		t.Skip("one core: nothing to step aside from")
	}
	// Quiet: the most Threads gives over a while (other tests may be busy;
	// only logged).
	quiet := 0
	for range 20 {
		quiet = max(quiet, Threads(0))
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("Threads(0) on this machine now: up to %d of %d cores", quiet, cores)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range cores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for ctx.Err() == nil {
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	busy := cores
	for range 20 {
		busy = min(busy, Threads(0))
	}
	cancel()
	wg.Wait()
	if busy != 1 {
		t.Errorf("with %d spinning threads Threads(0) = %d, want 1", cores, busy)
	}
	if got := Threads(1); got != 1 {
		t.Errorf("Threads(1) = %d", got)
	}
}
