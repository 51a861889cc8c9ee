package datasets

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/finetune-dev/finetune/internal/shared"
)

// TestScanLongLineBoundedMemory scans, in a child process, a JSONL file
// with one 50 MB line among short ones, with stories260K's tokenizer and a
// 512-token window: the long record is dropped by its byte length before
// it is tokenized, and the child's peak RSS stays under 500 MB (tokenized
// whole, the line took 3.8 GB).
func TestScanLongLineBoundedMemory(t *testing.T) {
	if path := os.Getenv("FINETUNE_TEST_LONGLINE"); path != "" {
		scanLongLineChild(t, path)
		return
	}
	model := shared.Path(t, "models/stories260K.gguf")
	path := filepath.Join(t.TempDir(), "long.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString(`{"text": "Once upon a time there was a cat."}` + "\n")
	w.WriteString(`{"text": "`)
	word := "the little dog ran to the park and saw a big red ball. "
	for n := 0; n < 50<<20; n += len(word) {
		w.WriteString(word)
	}
	w.WriteString("\"}\n")
	w.WriteString(`{"text": "She was happy and played all day."}` + "\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestScanLongLineBoundedMemory$", "-test.v")
	cmd.Env = append(os.Environ(), "FINETUNE_TEST_LONGLINE="+path, "FINETUNE_TEST_MODEL="+model)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var rep Report
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "REPORT "); ok {
			if err := json.Unmarshal([]byte(rest), &rep); err != nil {
				t.Fatal(err)
			}
		}
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	t.Logf("peak RSS of the scan: %d MiB; report: %+v", peak>>20, rep.Train)
	if rep.Train.Records != 3 || rep.Train.Examples != 2 || rep.Train.Dropped != 1 || rep.Train.Unmeasured != 1 {
		t.Errorf("want 3 records, 2 examples, the long one dropped unmeasured; got %+v", rep.Train)
	}
	if peak > 500<<20 {
		t.Errorf("peak RSS %d MiB, want under 500 MiB", peak>>20)
	}
}

func scanLongLineChild(t *testing.T, path string) {
	m := load(t, os.Getenv("FINETUNE_TEST_MODEL"))
	rep, err := Scan(Config{Train: path, MaxLength: 512, Workers: 1}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	os.Stdout.WriteString("\nREPORT " + string(b) + "\n")
}

// TestScanLongRecordTruncated: under Truncate, a record cut by its byte
// length before tokenizing keeps exactly the first MaxLength tokens that
// tokenizing it whole gives.
func TestScanLongRecordTruncated(t *testing.T) {
	m := load(t, shared.Path(t, "models/stories260K.gguf"))
	text := strings.Repeat("the little dog ran to the park and saw a big red ball. ", 4000) // 220 KB
	line, _ := json.Marshal(map[string]string{"text": text})
	path := writeFile(t, "long.jsonl", string(line)+"\n")
	var got []int32
	rep, err := Scan(Config{Train: path, MaxLength: 64, Overflow: Truncate}, m, func(it Item) error {
		got = it.Examples[0].Tokens
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	whole, err := m.Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Train.Truncated != 1 || len(got) != 64 || !slices.Equal(got, whole[:64]) {
		t.Fatalf("truncated %d, %d tokens; want the whole text's first 64", rep.Train.Truncated, len(got))
	}
}
