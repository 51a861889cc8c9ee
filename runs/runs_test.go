package runs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/datasets"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/shared"
	"github.com/finetune-dev/finetune/internal/sysmem"
	"github.com/finetune-dev/finetune/internal/testmodel"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
)

// recipe decodes a recipe held in a string, in dir.
func recipe(t *testing.T, dir, body string, sets ...string) *recipes.Recipe {
	t.Helper()
	r, err := recipes.Decode(filepath.Join(dir, "recipe.yaml"), []byte(body), sets)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const minimal = "name: unit\nbase: base.gguf\ndata:\n  train: data/train.jsonl\n"

func TestCreateIsExclusive(t *testing.T) {
	root := t.TempDir()
	seen := map[string]bool{}
	for range 3 { // within one second: the names get -2, -3
		dir, err := create("", root)
		if err != nil {
			t.Fatal(err)
		}
		if seen[dir] {
			t.Fatalf("%s made twice", dir)
		}
		seen[dir] = true
	}
	// --out: a new or empty folder is taken, one holding anything is not.
	out := filepath.Join(t.TempDir(), "run")
	if _, err := create(out, ""); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, RunFile), []byte("{}"), 0o644)
	if _, err := create(out, ""); err == nil || !strings.Contains(err.Error(), "already holds a run") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("create over a run: %v", err)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), nil, 0o644)
	if _, err := create(other, ""); err == nil || !strings.Contains(err.Error(), "not a run") {
		t.Fatalf("create over other files: %v", err)
	}
}

func TestLockNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	a, b := &Run{Dir: dir}, &Run{Dir: dir}
	if err := a.Lock("finetune train recipe.yaml", nil); err != nil {
		t.Fatal(err)
	}
	err := b.Lock("finetune train --resume", nil)
	if err == nil || !strings.Contains(err.Error(), "in use by finetune train recipe.yaml (pid ") {
		t.Fatalf("second lock: %v", err)
	}
	a.Close()
	if err := b.Lock("finetune eval", nil); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	b.Close()
}

func TestLockCleansTemporaries(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".checkpoint.gguf.tmp-123456")
	os.WriteFile(stale, []byte("half"), 0o644)
	keep := filepath.Join(dir, "checkpoint.gguf")
	os.WriteFile(keep, []byte("whole"), 0o644)
	r := &Run{Dir: dir}
	if err := r.Lock("finetune train", nil); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := os.Stat(stale); err == nil {
		t.Fatal("the killed run's temporary checkpoint is still there")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("the checkpoint went too")
	}
}

// fakeRun writes a run folder in state st on base, with a checkpoint.
func fakeRun(t *testing.T, st State, base string) *Run {
	t.Helper()
	dir := t.TempDir()
	sum, _, err := filehash.SHA256(base)
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Dir: dir, Record: Record{Recipe: filepath.Join(dir, "src.yaml"), Base: BaseModel{Ref: base, Path: base, SHA256: sum}, State: st, Steps: 7, Created: time.Now()}}
	r.Recipe = recipe(t, dir, strings.Replace(minimal, "base.gguf", base, 1))
	y, _ := r.Recipe.YAML()
	os.WriteFile(r.Path(RecipeFile), y, 0o644)
	if err := r.writeRecord(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.Path(CheckpointFile), []byte("ckpt"), 0o644)
	return r
}

func TestResumeRules(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.gguf")
	os.WriteFile(base, []byte("the base trained on"), 0o644)
	ctx := context.Background()

	// A finished run is not resumed.
	fin := fakeRun(t, Finished, base)
	run, err := Open(fin.Dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = run.Resume(ctx, TrainOptions{})
	run.Close()
	if !errors.Is(err, ErrFinished) || !strings.Contains(err.Error(), "nothing to resume") {
		t.Fatalf("resume of a finished run: %v", err)
	}

	// Without a checkpoint (stopped before its first) the run trains
	// again from step 0 (here it goes as far as the fake base).
	nock := fakeRun(t, Interrupted, base)
	os.Remove(nock.Path(CheckpointFile))
	run, _ = Open(nock.Dir)
	_, err = run.Resume(ctx, TrainOptions{})
	run.Close()
	log, _ := os.ReadFile(nock.Path(LogFile))
	if err == nil || strings.Contains(err.Error(), "no checkpoint") || !strings.Contains(string(log), "starts again from step 0") {
		t.Fatalf("resume without a checkpoint: %v\n%s", err, log)
	}

	// A base that changed (same name, other weights) is refused.
	moved := fakeRun(t, Interrupted, base)
	os.WriteFile(base, []byte("another model of the same shape"), 0o644)
	run, _ = Open(moved.Dir)
	_, err = run.Resume(ctx, TrainOptions{})
	run.Close()
	if err == nil || !strings.Contains(err.Error(), "is not the one the run trained on") {
		t.Fatalf("resume on another base: %v", err)
	}

	// A run another process holds is refused, naming the holder.
	held := fakeRun(t, Training, base)
	holder := &Run{Dir: held.Dir}
	if err := holder.Lock("finetune train held.yaml", nil); err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	run, _ = Open(held.Dir)
	_, err = run.Resume(ctx, TrainOptions{})
	run.Close()
	if err == nil || !strings.Contains(err.Error(), "in use by finetune train held.yaml") {
		t.Fatalf("resume of a run in use: %v", err)
	}
}

func TestOpenAndNewest(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.gguf")
	os.WriteFile(base, []byte("weights"), 0o644)
	root := t.TempDir()
	var made []*Run
	for i, st := range []State{Interrupted, Finished, Interrupted, Finished} {
		r := fakeRun(t, st, base)
		r.Record.Created = time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)
		r.writeRecord()
		dst := filepath.Join(root, "unit", filepath.Base(r.Dir))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.Rename(r.Dir, dst); err != nil {
			t.Fatal(err)
		}
		r.Dir = dst
		made = append(made, r)
	}
	got, err := Newest(root, "unit", nil)
	if err != nil || got.Dir != made[3].Dir {
		t.Fatalf("newest: %v %v, want %s", got, err, made[3].Dir)
	}
	got, err = Newest(root, "unit", func(r *Run) bool { return r.Record.State != Finished })
	if err != nil || got.Dir != made[2].Dir {
		t.Fatalf("newest unfinished: %v %v", got, err)
	}
	if got.Base() != base || got.Recipe == nil || got.Recipe.Name != "unit" {
		t.Fatalf("opened run: base %q recipe %+v", got.Base(), got.Recipe)
	}
	if _, err := Newest(root, "other", nil); err == nil {
		t.Fatal("a run of a recipe that has none")
	}
}

func TestOpenLegacyRun(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, LegacyBaseFile), []byte("/models/base.gguf\n"), 0o644)
	os.WriteFile(filepath.Join(dir, AdapterFile), []byte("GGUF"), 0o644)
	os.WriteFile(filepath.Join(dir, RecipeFile), []byte("# Resolved from /recipes/old.yaml (defaults filled in).\n"+minimal), 0o644)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Base() != "/models/base.gguf" || r.Record.State != Finished || r.Recipe.Dir != "/recipes" || r.Recipe.Resolve(r.Recipe.Data.Train) != "/recipes/data/train.jsonl" {
		t.Fatalf("legacy run: base %q state %s recipe dir %q", r.Base(), r.Record.State, r.Recipe.Dir)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a run folder") {
		t.Fatalf("empty folder: %v", err)
	}
}

func TestAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	r := recipe(t, dir, minimal+`eval:
  contestants:
    - {name: base}
    - {name: tuned, adapter: tuned}
    - {name: other, adapter: other.gguf, model: other-base.gguf}
`)
	c := absolutePaths(r, filepath.Join(dir, "base.gguf"))
	if c.Base != filepath.Join(dir, "base.gguf") || c.Data.Train != filepath.Join(dir, "data/train.jsonl") {
		t.Fatalf("base %q train %q", c.Base, c.Data.Train)
	}
	ct := c.Eval.Contestants
	if ct[1].Adapter != "tuned" || ct[2].Adapter != filepath.Join(dir, "other.gguf") || ct[2].Model != filepath.Join(dir, "other-base.gguf") {
		t.Fatalf("contestants %+v", ct)
	}
	if r.Eval.Contestants[2].Adapter != "other.gguf" {
		t.Fatal("absolutePaths changed the recipe it was given")
	}
	o := recipe(t, dir, strings.Replace(minimal, "base.gguf", "ollama:llama3.2:1b", 1))
	if c := absolutePaths(o, "/blobs/sha256-x"); c.Base != "ollama:llama3.2:1b" {
		t.Fatalf("an Ollama base became %q", c.Base)
	}
	// A catalog base is found on each machine anew: the reference stays.
	k := recipe(t, dir, strings.Replace(minimal, "base.gguf", "catalog:smollm2-135m-instruct", 1))
	if c := absolutePaths(k, "/shared/models/x.gguf"); c.Base != "catalog:smollm2-135m-instruct" {
		t.Fatalf("a catalog base became %q", c.Base)
	}
}

// TestStartRefusesACatalogBaseOfAnotherHash: a catalog model is found by
// its size; training, which hashes its base, refuses a file of that size
// that is not the catalog's, before any folder exists.
func TestStartRefusesACatalogBaseOfAnotherHash(t *testing.T) {
	dir := t.TempDir()
	sharedDir := filepath.Join(dir, "shared")
	t.Setenv("FINETUNE_SHARED", sharedDir)
	model := filepath.Join(sharedDir, "models", "Fake.gguf")
	os.MkdirAll(filepath.Dir(model), 0o755)
	if err := testmodel.Write(model, testmodel.Config{Layers: 1, Embd: 32, Heads: 2, KVHeads: 2, FF: 32, Context: 256}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(model)
	saved := basemodel.Catalog
	basemodel.Catalog = append(append([]basemodel.CatalogEntry(nil), saved...),
		basemodel.CatalogEntry{Name: "fake", File: "Fake.gguf", Size: st.Size(), SHA256: strings.Repeat("0", 64)})
	t.Cleanup(func() { basemodel.Catalog = saved })
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	var data strings.Builder
	for i := range 20 {
		fmt.Fprintf(&data, `{"prompt": "question %d", "completion": "answer %d"}`+"\n", i, i)
	}
	os.WriteFile(filepath.Join(dir, "data", "train.jsonl"), []byte(data.String()), 0o644)
	r := recipe(t, dir, "name: fake\nbase: catalog:fake\ndata:\n  train: data/train.jsonl\n  template: none\n  eval_ratio: 0.5\n  seq_len: 64\n")
	root := filepath.Join(dir, "runs")
	_, _, err := Start(context.Background(), r, TrainOptions{Root: root})
	if err == nil || !strings.Contains(err.Error(), "recipe.yaml:2: base: catalog:fake: "+model+" has sha256 ") || !strings.Contains(err.Error(), `not the catalog's 000000000000`) {
		t.Fatalf("Start = %v; want a refusal naming the file and both hashes", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("a refused run left %s behind", root)
	}
}

func TestLoRAConfig(t *testing.T) {
	r := recipe(t, t.TempDir(), minimal+`lora: {rank: 4, alpha: 12, targets: [attn_q, attn_v], dropout: 0.1, rslora: true}
train: {learning_rate: 1e-3, batch_size: 3, max_steps: 9, warmup_steps: 2, schedule: linear, weight_decay: 0.01, clip_norm: 0, eval_every: 3, val_windows: 12, patience: 2, checkpoint_every: 4, seed: 7, threads: 2, checkpointing: "on", precision: bf16}
`)
	c := LoRAConfig(r, "/run")
	switch {
	case c.Rank != 4 || c.Alpha != 12 || !c.RSLoRA || c.Dropout != 0.1 || strings.Join(c.Targets, ",") != "attn_q,attn_v":
		t.Fatalf("lora settings %+v", c)
	case c.LearningRate != 1e-3 || c.GradAccum != 3 || c.MaxSteps != 9 || c.WarmupSteps != 2 || c.Schedule != "linear" || c.WeightDecay != 0.01:
		t.Fatalf("optimizer settings %+v", c)
	case c.ClipNorm != -1:
		t.Fatalf("clip_norm 0 turns clipping off, got %g", c.ClipNorm)
	case c.EvalEvery != 3 || c.ValWindows != 12 || c.Patience != 2 || c.CheckpointEvery != 4 || c.Seed != 7 || c.Threads != 2 || c.Checkpointing != "on" || c.Precision != "bf16":
		t.Fatalf("loop settings %+v", c)
	case LoRAConfig(recipe(t, t.TempDir(), minimal), "/run").ValWindows != recipes.DefaultValWindows:
		t.Fatalf("a recipe without val_windows validates on %d windows, want %d", LoRAConfig(recipe(t, t.TempDir(), minimal), "/run").ValWindows, recipes.DefaultValWindows)
	case LoRAConfig(recipe(t, t.TempDir(), minimal, "train.val_windows=all"), "/run").ValWindows != 0:
		t.Fatal("val_windows: all does not validate on every window (0)")
	case c.Files.Checkpoint != "/run/"+CheckpointFile || c.Files.Metrics != "/run/"+MetricsFile || c.Files.Adapter != "/run/"+AdapterFile:
		t.Fatalf("files %+v", c.Files)
	}
}

func TestPlanEval(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	r := recipe(t, dir, minimal+`eval:
  generation: {max_tokens: 32, stop: ["\n"]}
  contestants:
    - {name: base}
    - {name: tuned, adapter: tuned}
    - {name: served, kind: ollama, model: support-bot, host: "http://127.0.0.1:1"}
    - {name: api, kind: openai, model: gpt-x, base_url: "http://127.0.0.1:1/v1", api_key_env: FINETUNE_UNIT_KEY}
  metrics:
    - {name: label_accuracy}
    - {name: judge, judge: api, rubric: "is it right?"}
    - {name: judge, judge: api, mode: pairwise, reference: base, rubric: "which is better?"}
    - {name: rouge_l}
`)
	if _, err := PlanEval(r, model, "", nil); err == nil || !strings.Contains(err.Error(), "--run RUN_DIR") {
		t.Fatalf("a tuned contestant without an adapter: %v", err)
	}
	r.Eval.Contestants = append(r.Eval.Contestants[:1:1], r.Eval.Contestants[2:]...) // without the tuned one
	t.Setenv("FINETUNE_UNIT_KEY", "sk-unit")
	p, err := PlanEval(r, model, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := p.Contestants[0].(*evals.Local); !ok || p.Contestants[0].Name() != "base" {
		t.Fatalf("contestant 0: %T %s", p.Contestants[0], p.Contestants[0].Name())
	}
	if _, ok := p.Contestants[1].(*evals.Ollama); !ok {
		t.Fatalf("contestant 1: %T", p.Contestants[1])
	}
	if _, ok := p.Contestants[2].(*evals.OpenAI); !ok {
		t.Fatalf("contestant 2: %T", p.Contestants[2])
	}
	m := p.Metrics
	if len(m) != 4 || m[0].Kind != evals.Label || m[1].Kind != evals.JudgeRubric || m[1].Name != "judge_rubric" || m[1].Judge != p.Contestants[2] ||
		m[2].Kind != evals.JudgePairwise || m[2].Against != "base" || m[3].Kind != evals.MetricKind("rouge_l") {
		t.Fatalf("metrics %+v", m)
	}

	// A contestant's generation settings override the suite's.
	temp, seed := 0.5, int64(3)
	s := settings(recipes.Generation{MaxTokens: 8, Temperature: &temp}, recipes.Generation{MaxTokens: 32, Stop: []string{"\n"}, Temperature: new(float64), Seed: &seed})
	if s.MaxTokens != 8 || s.Temperature != 0.5 || s.Seed != 3 || len(s.Stop) != 1 {
		t.Fatalf("settings %+v", s)
	}
}

func TestPublishOptionsPrecedence(t *testing.T) {
	dir := t.TempDir()
	run := &Run{Dir: dir, Record: Record{Base: BaseModel{Path: "/models/base.gguf"}}}
	run.Recipe = recipe(t, dir, minimal+"publish: {ollama: recipe-name, host: \"http://recipe-host:11434\", as: merged}\n", "data.template=chatml")

	po, err := publishOptions(run, PublishOptions{})
	if err != nil || po.Name != "recipe-name" || po.Host != "http://recipe-host:11434" || po.Base != "/models/base.gguf" ||
		po.Adapter != filepath.Join(dir, AdapterFile) || po.Template.Train != "chatml" || po.FromOllama != "" || po.ModelfileDir != dir ||
		po.As != "merged" || po.Merged != filepath.Join(dir, MergedFile) {
		t.Fatalf("from the recipe: %+v %v", po, err)
	}
	po, _ = publishOptions(run, PublishOptions{Name: "flag-name", Host: "http://flag-host:1", ChatTemplate: "llama3", Base: "/other.gguf", As: "adapter"})
	if po.Name != "flag-name" || po.Host != "http://flag-host:1" || po.Template.Train != "llama3" || po.Base != "/other.gguf" || po.As != "adapter" {
		t.Fatalf("flags win: %+v", po)
	}
	run.Recipe.Base = "ollama:llama3.2:1b"
	if po, _ = publishOptions(run, PublishOptions{}); po.FromOllama != "llama3.2:1b" {
		t.Fatalf("an Ollama base publishes FROM it: %+v", po)
	}
	if po, _ = publishOptions(run, PublishOptions{Base: "/file.gguf"}); po.FromOllama != "" || po.Base != "/file.gguf" {
		t.Fatalf("--base FILE uploads that file: %+v", po)
	}
	if po, _ = publishOptions(run, PublishOptions{Base: "ollama:other"}); po.FromOllama != "other" {
		t.Fatalf("--base ollama:NAME: %+v", po)
	}
	run.Recipe.Publish.Ollama = ""
	if _, err := publishOptions(run, PublishOptions{}); err == nil || !strings.Contains(err.Error(), "--ollama NAME") {
		t.Fatalf("no name: %v", err)
	}
	if po, err = publishOptions(run, PublishOptions{ModelfileOnly: true}); err != nil || po.Name != "unit" {
		t.Fatalf("a Modelfile without a name takes the recipe's: %+v %v", po, err)
	}
}

// TestPlanEvalPatience: a contestant's timeout, attempts and budget reach
// its requests.
func TestPlanEvalPatience(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	r := recipe(t, t.TempDir(), minimal+`eval:
  contestants:
    - {name: base}
    - {name: served, kind: ollama, model: support-bot, host: "http://127.0.0.1:1", timeout: 2m, attempts: 4, budget: 10m}
    - {name: api, kind: openai, model: gpt-x, base_url: "http://127.0.0.1:1/v1"}
`)
	p, err := PlanEval(r, model, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	served, api := p.Contestants[1].Info().Retry, p.Contestants[2].Info().Retry
	if served == nil || served.Timeout != 2*time.Minute || served.Attempts != 4 || served.Budget != 10*time.Minute {
		t.Fatalf("served: %+v", served)
	}
	if api == nil || api.Timeout != recipes.DefaultTimeout || api.Attempts != recipes.DefaultAttempts || api.Budget != 0 {
		t.Fatalf("api: %+v", api)
	}
	if recipes.DefaultTimeout != evals.DefaultTimeout || recipes.DefaultAttempts != evals.DefaultAttempts {
		t.Fatalf("the recipe's defaults (%v, %d) are not evals' (%v, %d)", recipes.DefaultTimeout, recipes.DefaultAttempts, evals.DefaultTimeout, evals.DefaultAttempts)
	}
	if p.Contestants[0].Info().Retry != nil {
		t.Fatal("a local contestant has a request policy")
	}
}

// TestEvalCasesSample: eval.max_cases draws a seeded random sample of the
// eval split, stratified by label: from a file sorted by label, 40 of 20
// labels' cases cover every label twice; the same seed draws the same
// cases, another seed others; labels of unequal sizes keep their shares;
// cases without labels make a plain random sample, not the first ones.
func TestEvalCasesSample(t *testing.T) {
	model := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	write := func(name string, n int, label func(i int) string) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"prompt": "Q%03d:", "completion": " A%03d", "label": %q}`+"\n", i, i, label(i))
		}
		os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644)
	}
	write("train.jsonl", 4, func(int) string { return "" })
	write("sorted.jsonl", 400, func(i int) string { return fmt.Sprintf("label%02d", i/20) }) // 20 labels, 20 cases each, in order
	body := func(eval string, extra string) string {
		return fmt.Sprintf("name: unit\nbase: %s\ndata:\n  train: train.jsonl\n  eval: %s\n  template: none\n%s", model, eval, extra)
	}
	labels := func(cs []datasets.Case) map[string]int {
		n := map[string]int{}
		for _, c := range cs {
			n[c.Label]++
		}
		return n
	}
	r := recipe(t, dir, body("sorted.jsonl", "eval:\n  max_cases: 40\n"))
	cases, sel, err := Cases(r, model)
	if err != nil {
		t.Fatal(err)
	}
	if n := labels(cases); len(cases) != 40 || len(n) != 20 {
		t.Fatalf("%d cases over %d labels: %v", len(cases), len(n), n)
	} else {
		for l, k := range n {
			if k != 2 {
				t.Errorf("%s: %d cases, want 2", l, k)
			}
		}
	}
	if sel.Method != "stratified" || sel.By != "label" || sel.Strata != 20 || sel.Chosen != 40 || sel.Of != 400 || sel.Seed != 42 {
		t.Errorf("selection %+v", sel)
	}
	if s := sel.String(); s != "a random sample of 40 of the eval split's 400 cases, stratified by label (20 strata; seed 42)" {
		t.Errorf("selection in words: %q", s)
	}
	again, _, _ := Cases(r, model)
	for i := range cases {
		if again[i].Reference != cases[i].Reference {
			t.Fatalf("the same seed drew case %d %q, then %q", i, cases[i].Reference, again[i].Reference)
		}
	}
	other, sel2, _ := Cases(recipe(t, dir, body("sorted.jsonl", "eval:\n  max_cases: 40\n"), "data.seed=7"), model)
	same := 0
	for i := range other {
		if other[i].Reference == cases[i].Reference {
			same++
		}
	}
	if same == len(cases) || sel2.Seed != 7 || len(labels(other)) != 20 {
		t.Errorf("seed 7: %d of %d cases the same as seed 42's, %d labels, selection %+v", same, len(cases), len(labels(other)), sel2)
	}
	// Unequal labels: 300 "common", 90 "rare", 10 "scarce"; 20 drawn.
	write("skewed.jsonl", 400, func(i int) string {
		switch {
		case i < 300:
			return "common"
		case i < 390:
			return "rare"
		}
		return "scarce"
	})
	skewed, _, err := Cases(recipe(t, dir, body("skewed.jsonl", "eval:\n  max_cases: 20\n")), model)
	if n := labels(skewed); err != nil || len(skewed) != 20 || n["scarce"] < 1 || n["common"] < 13 || n["common"] > 16 || n["rare"] < 3 || n["rare"] > 6 {
		t.Errorf("skewed sample: %v (%v)", n, err)
	}
	// No labels: a plain random sample, spread over the file.
	write("plain.jsonl", 400, func(int) string { return "" })
	plain, psel, err := Cases(recipe(t, dir, body("plain.jsonl", "eval:\n  max_cases: 40\n")), model)
	if err != nil || len(plain) != 40 || psel.Method != "random" || plain[39].Reference <= " A100" {
		t.Errorf("plain sample: %d cases, %+v, the last %q (%v)", len(plain), psel, plain[len(plain)-1].Reference, err)
	}
	// Every case: no sample.
	all, asel, err := Cases(recipe(t, dir, body("plain.jsonl", "")), model)
	if err != nil || len(all) != 400 || asel.Method != "all" || all[0].Reference != " A000" {
		t.Errorf("all cases: %d, %+v (%v)", len(all), asel, err)
	}
}

// TestStartRefusesWhatCannotFit: a run whose every-activation graph needs
// more memory than the machine has is refused before any folder exists,
// and the error says that checkpointing would make it fit.
func TestStartRefusesWhatCannotFit(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "deep.gguf")
	// 64 thin layers at context 8192: the attention probabilities kept for
	// every layer take about 68 GiB; checkpointed, about 2 GiB.
	if err := testmodel.Write(base, testmodel.Config{Layers: 64, Embd: 32, Heads: 2, KVHeads: 2, FF: 32, Context: 8192}); err != nil {
		t.Fatal(err)
	}
	mem, err := lora.EstimateMemory(base, 8192, lora.MemoryOptions{Rank: 8})
	if err != nil {
		t.Fatal(err)
	}
	avail := sysmem.Available()
	if avail == 0 || mem.WholeWindow <= avail || mem.Checkpointed > avail {
		t.Skipf("this machine has %.1f GiB available: the test needs less than %.1f and more than %.1f", gib(avail), gib(mem.WholeWindow), gib(mem.Checkpointed))
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	var data strings.Builder
	for i := range 20 {
		fmt.Fprintf(&data, `{"prompt": "question %d", "completion": "answer %d"}`+"\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "train.jsonl"), []byte(data.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := recipe(t, dir, "name: deep\nbase: deep.gguf\ndata:\n  train: data/train.jsonl\n  template: none\n  eval_ratio: 0.5\n  seq_len: 8192\ntrain:\n  checkpointing: \"off\"\n")
	root := filepath.Join(dir, "runs")
	_, _, err = Start(context.Background(), r, TrainOptions{Root: root})
	if err == nil || !strings.Contains(err.Error(), "needs about") || !strings.Contains(err.Error(), "train.checkpointing: on") {
		t.Fatalf("Start = %v; want a refusal that names train.checkpointing", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("a refused run left %s behind", root)
	}
}
