// Command benchdata measures the datasets pipeline (`make bench-data`):
// records/s and tokens/s for reading, rendering and tokenizing 100k
// synthetic chat records, and the peak memory (RSS) of streaming a 1 GB
// JSONL file through the whole pipeline, packing included. The data is
// generated into a temporary folder and deleted afterwards.
//
//	go run ./datasets/internal/benchdata [-records 100000] [-big-mb 1024] [-model M.gguf -template T]
//
// Without -model it uses the shared Llama-2 model (the real 32,000-token
// vocabulary) with llama.cpp's llama2 template.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/shared"
)

func main() {
	records := flag.Int("records", 100_000, "synthetic chat records for the throughput figures")
	bigMB := flag.Int("big-mb", 1024, "size of the JSONL file for the memory figure, in MB (0: skip)")
	model := flag.String("model", "", "model whose tokenizer renders the data (default: the shared llama-2-tiny-random.gguf)")
	template := flag.String("template", "llama2", "chat template")
	ctx := flag.Int("ctx", 2048, "context length of the packed windows")
	workers := flag.Int("workers", 0, "rendering workers (0: GOMAXPROCS)")
	child := flag.String("scan", "", "(internal) scan this file and print its figures")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the 100k-record runs to this file")
	flag.Parse()
	if *model == "" {
		if d := shared.Dir(); d != "" {
			*model = filepath.Join(d, "models", "llama-2-tiny-random.gguf")
		}
		if _, err := os.Stat(*model); err != nil {
			fail(fmt.Errorf("no model: pass -model (the shared llama-2-tiny-random.gguf is not there)"))
		}
	}
	if *child != "" {
		fail(scanChild(*child, *model, *template, *ctx, *workers))
	}

	dir, err := os.MkdirTemp("", "finetune-bench-data-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	fmt.Printf("model %s, template %s, %d CPUs, workers %d (0: one per CPU), data in %s (deleted afterwards)\n\n", *model, *template, runtime.GOMAXPROCS(0), *workers, dir)

	// Throughput: 100k records.
	small := filepath.Join(dir, "chat-100k.jsonl")
	size, err := generate(small, *records, 0)
	if err != nil {
		fail(err)
	}
	m, err := llama.LoadModel(*model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		fail(err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cfg := datasets.Config{Train: small, Workers: *workers, RenderOptions: datasets.RenderOptions{Template: *template}}
	for _, withModel := range []bool{false, true} {
		var mm *llama.Model
		what := "read + parse + check"
		if withModel {
			mm, what = m, "read + render + tokenize"
		}
		start := time.Now()
		var tokens int64
		rep, err := datasets.Scan(cfg, mm, func(it datasets.Item) error {
			for _, ex := range it.Examples {
				tokens += int64(len(ex.Tokens))
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
		el := time.Since(start).Seconds()
		n := rep.Train.Records + rep.Train.Duplicates
		fmt.Printf("%-26s %d records (%.1f MB) in %.2fs: %.0f records/s, %.1f MB/s", what, n, float64(size)/1e6, el, float64(n)/el, float64(size)/1e6/el)
		if withModel {
			fmt.Printf(", %.0f tokens/s (%d tokens)", float64(tokens)/el, tokens)
		}
		fmt.Println()
	}
	m.Close()
	os.Remove(small)
	pprof.StopCPUProfile()

	// Memory: a 1 GB file through the whole pipeline, in a fresh process.
	if *bigMB <= 0 {
		return
	}
	var fsst syscall.Statfs_t
	if err := syscall.Statfs(dir, &fsst); err == nil && fsst.Bavail*uint64(fsst.Bsize) < uint64(*bigMB)*1e6*3/2 {
		fmt.Printf("\nskipping the %d MB file: %s has %.1f GB free\n", *bigMB, dir, float64(fsst.Bavail*uint64(fsst.Bsize))/1e9)
		return
	}
	big := filepath.Join(dir, "chat-big.jsonl")
	size, err = generate(big, 0, int64(*bigMB)*1e6)
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(os.Args[0], "-scan", big, "-model", *model, "-template", *template, "-ctx", fmt.Sprint(*ctx), "-workers", fmt.Sprint(*workers))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fail(fmt.Errorf("scanning the big file: %w", err))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Printf("%.2f GB file: peak RSS %.1f MiB (in %.1fs)\n", float64(size)/1e9, float64(ru.Maxrss)/1024, time.Since(start).Seconds())
}

// scanChild streams file through Scan and a Packer, as training does.
func scanChild(file, model, template string, ctx, workers int) error {
	m, err := llama.LoadModel(model, llama.ModelOptions{VocabOnly: true})
	if err != nil {
		return err
	}
	defer m.Close()
	p := datasets.NewPacker(ctx)
	windows, tokens := 0, int64(0)
	start := time.Now()
	cfg := datasets.Config{Train: file, MaxLength: ctx, Workers: workers, RenderOptions: datasets.RenderOptions{Template: template}}
	rep, err := datasets.Scan(cfg, m, func(it datasets.Item) error {
		for _, ex := range it.Examples {
			windows += len(p.Add(ex))
			tokens += int64(len(ex.Tokens))
		}
		return nil
	})
	if err != nil {
		return err
	}
	windows += len(p.Flush())
	el := time.Since(start).Seconds()
	fmt.Printf("\nwhole pipeline on the big file: %d records (%d duplicates removed), %d tokens into %d windows of %d in %.1fs: %.0f records/s, %.0f tokens/s\n",
		rep.Train.Records, rep.Train.Duplicates, tokens, windows, ctx, el, float64(rep.Train.Records)/el, float64(tokens)/el)
	os.Exit(0)
	return nil
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their can has been if more when will would who so no what about out up into than them only other new some time could these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three states himself few house use during without again place around however home small found thought went say part once general high upon school every does got united left number course war until always away something fact though water less public put think almost hand enough far took head yet government system better set told nothing night end why called didn't eyes find going look asked later knew point next program city business give group toward young days let room president side social given present several order national possible rather second face per among form important often things looked early white case john become large big need four within felt along children saw best church ever least power development light thought question`)

// generate writes synthetic chat records to path: n of them, or as many as
// fill size bytes. One in twenty repeats an earlier record.
func generate(path string, n int, size int64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(lo, hi int) string {
		k := lo + rng.IntN(hi-lo)
		var b strings.Builder
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteByte('.')
		s := b.String()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var written int64
	var last []byte
	for i := 0; (n > 0 && i < n) || (n == 0 && written < size); i++ {
		line := last
		if last == nil || rng.IntN(20) != 0 {
			var msgs []msg
			if rng.IntN(3) == 0 {
				msgs = append(msgs, msg{"system", text(5, 20)})
			}
			for t := 0; t < 1+rng.IntN(2); t++ {
				msgs = append(msgs, msg{"user", text(8, 60)}, msg{"assistant", text(10, 150)})
			}
			line, _ = json.Marshal(map[string]any{"messages": msgs})
			line = append(line, '\n')
		}
		last = line
		if _, err := w.Write(line); err != nil {
			f.Close()
			return written, err
		}
		written += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return written, err
	}
	return written, f.Close()
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-data:", err)
		os.Exit(1)
	}
}
