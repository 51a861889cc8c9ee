package recipes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `name: support
base: model.gguf
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
  seq_len: 256
lora:
  rank: 16
  targets: [attn_q, attn_v]
train:
  epochs: 2
  learning_rate: 1e-3
eval:
  contestants:
    - name: base
    - name: tuned
      adapter: tuned
    - name: api
      kind: openai
      model: gpt-4o-mini
      base_url: http://127.0.0.1:1/v1
      api_key_env: OPENAI_API_KEY
  metrics:
    - name: label_accuracy
      pattern: "Intent: (\\w+)"
`

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recipe.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFillsDefaults(t *testing.T) {
	p := write(t, good)
	r, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.LoRA.Rank != 16 || r.LoRA.Alpha != 32 || r.Train.Schedule != "cosine" || r.Train.BatchSize != 1 || *r.Data.Packing != true || r.Data.Overflow != "drop" {
		t.Fatalf("defaults: %+v %+v %+v", r.LoRA, r.Train, r.Data)
	}
	if r.Resolve(r.Data.Train) != filepath.Join(filepath.Dir(p), "data/train.jsonl") {
		t.Fatalf("data path resolves to %s", r.Resolve(r.Data.Train))
	}
	if c := r.Eval.Contestants[2]; c.Concurrency != 4 || c.Kind != "openai" {
		t.Fatalf("api contestant %+v", c)
	}
	if r.Line("train.learning_rate") != 12 {
		t.Fatalf("line of train.learning_rate = %d", r.Line("train.learning_rate"))
	}
	out, err := r.YAML()
	if err != nil || !strings.Contains(string(out), "schedule: cosine") || !strings.Contains(string(out), "alpha: 32") {
		t.Fatalf("resolved YAML:\n%s", out)
	}
}

func TestErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct {
		name, edit, want string
	}{
		{"misspelled key", "learning_rate: 1e-3", "recipe.yaml:12: train: unknown key \"learning_rat\" (did you mean \"learning_rate\"?)"},
		{"misspelled section", "lora:\n", "recipe.yaml:7: unknown key \"lorra\" (did you mean \"lora\"?)"},
		{"wrong type", "rank: 16", "recipe.yaml:8: lora.rank: expected a whole number, got \"sixteen\""},
		{"rank zero", "rank: 16", "recipe.yaml:8: lora.rank: 0: the rank must be at least 1"},
		{"negative lr", "learning_rate: 1e-3", "recipe.yaml:12: train.learning_rate: -0.1: the learning rate must be positive"},
		{"warmup longer than run", "epochs: 2", "train.warmup_steps: 20 warmup steps for a run of 10 steps"},
		{"unknown target", "targets: [attn_q, attn_v]", "recipe.yaml:9: lora.targets[1]: unknown target \"attn_vv\" (did you mean \"attn_v\"?)"},
		{"list expected", "targets: [attn_q, attn_v]", "recipe.yaml:9: lora.targets: expected a list, got a section of keys"},
		{"unknown metric", "- name: label_accuracy", "recipe.yaml:24: eval.metrics[0].name: unknown metric \"label_acuracy\" (did you mean \"label_accuracy\"?)"},
		{"bad regex", `pattern: "Intent: (\\w+)"`, "recipe.yaml:25: eval.metrics[0].pattern: not a valid regular expression"},
		{"eval ratio and file", "  seq_len: 256", "recipe.yaml:6: data.eval_ratio: give a separate eval file"},
		{"duplicate contestant", "    - name: api", "recipe.yaml:18: eval.contestants[2].name: \"base\" is used twice"},
		{"unknown precision", "learning_rate: 1e-3", `train.precision: "fp16": use auto, f32 or bf16`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := good
			switch c.name {
			case "misspelled key":
				body = strings.Replace(body, c.edit, "learning_rat: 1e-3", 1)
			case "misspelled section":
				body = strings.Replace(body, c.edit, "lorra:\n", 1)
			case "wrong type":
				body = strings.Replace(body, c.edit, "rank: sixteen", 1)
			case "rank zero":
				body = strings.Replace(body, c.edit, "rank: 0", 1)
			case "negative lr":
				body = strings.Replace(body, c.edit, "learning_rate: -0.1", 1)
			case "warmup longer than run":
				body = strings.Replace(body, c.edit, "max_steps: 10\n  warmup_steps: 20", 1)
			case "unknown target":
				body = strings.Replace(body, c.edit, "targets: [attn_q, attn_vv]", 1)
			case "list expected":
				body = strings.Replace(body, c.edit, "targets: {a: 1}", 1)
			case "unknown metric":
				body = strings.Replace(body, c.edit, "- name: label_acuracy", 1)
			case "bad regex":
				body = strings.Replace(body, c.edit, `pattern: "Intent: (\\w+"`, 1)
			case "eval ratio and file":
				body = strings.Replace(body, c.edit, "  eval_ratio: 0.2", 1)
			case "unknown precision":
				body = strings.Replace(body, c.edit, "learning_rate: 1e-3\n  precision: fp16", 1)
			case "duplicate contestant":
				body = strings.Replace(body, c.edit, "    - name: base", 1)
			}
			_, err := Load(write(t, body), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// TestPublishSection: publish.ollama must be a name Ollama takes, publish.as
// one of the forms.
func TestPublishSection(t *testing.T) {
	if _, err := Load(write(t, good), []string{"publish.ollama=team/support-bot:v2", "publish.host=http://127.0.0.1:11434"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(write(t, good), []string{"publish.ollama=support bot!"}); err == nil || !strings.Contains(err.Error(), `publish.ollama: "support bot!" is not an Ollama model name`) {
		t.Fatalf("bad name: %v", err)
	}
	for _, as := range []string{"adapter", "merged", "auto"} {
		if r, err := Load(write(t, good), []string{"publish.as=" + as}); err != nil || r.Publish.As != as {
			t.Fatalf("publish.as=%s: %v", as, err)
		}
	}
	if _, err := Load(write(t, good), []string{"publish.as=lora"}); err == nil || !strings.Contains(err.Error(), `publish.as: "lora" is not a form to publish in`) {
		t.Fatalf("bad publish.as: %v", err)
	}
}

func TestMissingFileAndEmpty(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil); err == nil || !strings.Contains(err.Error(), "no such recipe file") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Load(write(t, "name: x\nbase: m.gguf\n"), nil); err == nil || !strings.Contains(err.Error(), "data.train: missing") {
		t.Fatalf("no data: %v", err)
	}
	if _, err := Load(write(t, "name: [\n"), nil); err == nil || !strings.Contains(err.Error(), "recipe.yaml") {
		t.Fatalf("broken YAML: %v", err)
	}
}

func TestOverrides(t *testing.T) {
	p := write(t, good)
	r, err := Load(p, []string{"train.learning_rate=5e-4", "lora.rank=4", "data.packing=false", "lora.targets=ffn_up", "base=other.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Train.LearningRate != 5e-4 || r.LoRA.Rank != 4 || r.LoRA.Alpha != 8 || *r.Data.Packing || len(r.LoRA.Targets) != 1 || r.Base != "other.gguf" {
		t.Fatalf("overrides not applied: %+v %+v", r.Train, r.LoRA)
	}
	for _, c := range []struct{ set, want string }{
		{"train.learning_rat=1", `unknown key "learning_rat" (did you mean "learning_rate"?)`},
		{"lora.rank=x", "expected a whole number"},
		{"lora.rank=0", "lora.rank: 0: the rank must be at least 1"},
		{"noequals", "write key.path=value"},
		{"name.x=1", "is not a section"},
	} {
		if _, err := Load(p, []string{c.set}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: err = %v, want %q", c.set, err, c.want)
		}
	}
}

// TestNotARecipe: a model (or another binary file) given where a recipe
// goes says what it is and what to do, not what the YAML parser makes of
// it.
func TestNotARecipe(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.gguf")
	os.WriteFile(model, append([]byte("GGUF\x03\x00\x00\x00"), make([]byte, 64)...), 0o644)
	zip := filepath.Join(dir, "data.zip")
	os.WriteFile(zip, []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00 name: x"), 0o644)
	for _, c := range []struct {
		path string
		want []string
	}{
		{model, []string{model + " is a GGUF model file, not a recipe", "`base:`", "recipes/customer-support.yaml"}},
		{zip, []string{zip + " is a binary file, not a recipe", "YAML"}},
	} {
		_, err := Load(c.path, nil)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Fatalf("Load(%s) = %v, want it to say %q", filepath.Base(c.path), err, w)
			}
		}
		src, _ := os.ReadFile(c.path)
		if _, perr := Parse(c.path, src); perr == nil || perr.Error() != err.Error() {
			t.Fatalf("Parse(%s) = %v, want %v", filepath.Base(c.path), perr, err)
		}
	}
}

// TestSetClears: --set key= (nothing after "=") clears the field, so that
// the default applies, for text, numbers, lists and sections alike.
func TestSetClears(t *testing.T) {
	p := write(t, good)
	r, err := Load(p, []string{"data.eval=", "lora.rank=", "lora.targets=", "train.learning_rate= ", "eval.contestants=null"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Data.Eval != "" || r.Data.EvalRatio != 0.1 {
		t.Errorf("data.eval= left eval %q, eval_ratio %g; want no eval file and the default ratio 0.1", r.Data.Eval, r.Data.EvalRatio)
	}
	if r.LoRA.Rank != 8 || r.LoRA.Alpha != 16 || len(r.LoRA.Targets) != 7 {
		t.Errorf("lora.rank= and lora.targets= give %+v; want the defaults (rank 8, alpha 16, seven targets)", r.LoRA)
	}
	if r.Train.LearningRate != 2e-4 {
		t.Errorf("train.learning_rate= gives %g, want the default 2e-4", r.Train.LearningRate)
	}
	if len(r.Eval.Contestants) != 2 || r.Eval.Contestants[1].Adapter != "tuned" || r.Eval.Contestants[0].Name != "base" {
		t.Errorf("eval.contestants=null gives %+v, want the default base and tuned", r.Eval.Contestants)
	}
	// A required value cleared is missing, not of the wrong type.
	if _, err := Load(p, []string{"data.train="}); err == nil || !strings.Contains(err.Error(), "data.train: missing") {
		t.Fatalf("data.train=: %v", err)
	}
	// With eval cleared, a ratio may be given again.
	if r, err := Load(p, []string{"data.eval=", "data.eval_ratio=0.25"}); err != nil || r.Data.EvalRatio != 0.25 {
		t.Fatalf("data.eval= then data.eval_ratio=0.25: %v", err)
	}
}

// TestDirIsAbsolute: a recipe given by a relative path keeps that path,
// but resolves its files from the absolute folder, whatever the working
// folder is later.
func TestDirIsAbsolute(t *testing.T) {
	dir := filepath.Dir(write(t, good))
	t.Chdir(dir)
	r, err := Load("recipe.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != "recipe.yaml" || !filepath.IsAbs(r.Dir) {
		t.Fatalf("Path %q, Dir %q; want the path as given and an absolute folder", r.Path, r.Dir)
	}
	want := filepath.Join(dir, "data", "train.jsonl")
	t.Chdir(t.TempDir())
	if got := r.Resolve(r.Data.Train); got != want {
		t.Fatalf("data.train resolves to %s, want %s", got, want)
	}
}

// TestContestantPatience: an API contestant's timeout, attempts and budget
// have defaults that end a dead endpoint in about a minute, take durations
// ("2m", or a number of seconds), are checked with their line, and are
// refused on a local contestant, which makes no requests.
func TestContestantPatience(t *testing.T) {
	r, err := Load(write(t, good), nil)
	if err != nil {
		t.Fatal(err)
	}
	api := r.Eval.Contestants[2]
	if api.Timeout != 30*time.Second || api.Attempts != 3 || api.Budget != 0 {
		t.Fatalf("defaults: timeout %v, attempts %d, budget %v", api.Timeout, api.Attempts, api.Budget)
	}
	if base := r.Eval.Contestants[0]; base.Timeout != 0 || base.Attempts != 0 {
		t.Fatalf("a local contestant got request settings: %+v", base)
	}
	given := strings.Replace(good, "      api_key_env: OPENAI_API_KEY\n", "      api_key_env: OPENAI_API_KEY\n      timeout: 2m\n      attempts: 5\n      budget: 90\n", 1)
	r, err = Load(write(t, given), nil)
	if err != nil {
		t.Fatal(err)
	}
	if api := r.Eval.Contestants[2]; api.Timeout != 2*time.Minute || api.Attempts != 5 || api.Budget != 90*time.Second {
		t.Fatalf("given: timeout %v, attempts %d, budget %v", api.Timeout, api.Attempts, api.Budget)
	}
	// The resolved recipe (a run folder's recipe.yaml, read with Parse)
	// reads back the same.
	out, err := r.YAML()
	if err != nil || !strings.Contains(string(out), "timeout: 2m0s") || !strings.Contains(string(out), "budget: 1m30s") {
		t.Fatalf("resolved YAML:\n%s", out)
	}
	back, err := Parse(filepath.Join(t.TempDir(), "recipe.yaml"), out)
	if err != nil || back.Eval.Contestants[2].Timeout != 2*time.Minute || back.Eval.Contestants[2].Budget != 90*time.Second {
		t.Fatalf("read back: %v", err)
	}
	for edit, want := range map[string]string{
		"      timeout: soon\n":  "recipe.yaml:23: eval.contestants[2].timeout: expected a duration (like 30s, 2m or 1h30m), got \"soon\"",
		"      timeout: 100ms\n": "eval.contestants[2].timeout: 100ms: at least 1s",
		"      attempts: -1\n":   "eval.contestants[2].attempts: -1: at least 1",
		"      budget: -5s\n":    "eval.contestants[2].budget: -5s must not be negative",
	} {
		body := strings.Replace(good, "      api_key_env: OPENAI_API_KEY\n", "      api_key_env: OPENAI_API_KEY\n"+edit, 1)
		if _, err := Load(write(t, body), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", edit, err, want)
		}
	}
	local := strings.Replace(good, "    - name: base\n", "    - name: base\n      timeout: 10s\n", 1)
	if _, err := Load(write(t, local), nil); err == nil || !strings.Contains(err.Error(), "recipe.yaml:16: eval.contestants[0].timeout: a local contestant makes no requests") {
		t.Errorf("timeout on a local contestant: %v", err)
	}
}

// TestValWindows: train.val_windows is 32 when left out, a number, or all
// (0 too) for every window; the resolved recipe writes all, and reads
// back the same.
func TestValWindows(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want Count
		yaml string
	}{
		{nil, DefaultValWindows, "val_windows: 32"},
		{[]string{"train.val_windows=100"}, 100, "val_windows: 100"},
		{[]string{"train.val_windows=all"}, 0, "val_windows: all"},
		{[]string{"train.val_windows=ALL"}, 0, "val_windows: all"},
		{[]string{"train.val_windows=0"}, 0, "val_windows: all"},
		{[]string{"train.val_windows=all", "train.val_windows="}, DefaultValWindows, "val_windows: 32"},
	} {
		p := write(t, good)
		r, err := Load(p, c.set)
		if err != nil {
			t.Fatalf("%v: %v", c.set, err)
		}
		if r.Train.ValWindows != c.want {
			t.Errorf("%v: val_windows %d, want %d", c.set, r.Train.ValWindows, c.want)
		}
		out, err := r.YAML()
		if err != nil || !strings.Contains(string(out), c.yaml) {
			t.Fatalf("%v: the resolved recipe lacks %q:\n%s", c.set, c.yaml, out)
		}
		// The run folder keeps the resolved recipe and reads it back (as
		// it is, without defaults: runs.Open).
		again, err := Parse(p, out)
		if err != nil || again.Train.ValWindows != c.want {
			t.Fatalf("%v: the resolved recipe reads back as %v (%v)", c.set, again, err)
		}
	}
	body := strings.Replace(good, "  learning_rate: 1e-3", "  learning_rate: 1e-3\n  val_windows: all", 1)
	if r, err := Load(write(t, body), nil); err != nil || r.Train.ValWindows != 0 || r.Line("train.val_windows") != 13 {
		t.Fatalf("val_windows: all in the file: %v, %v", r, err)
	}
	for _, c := range []struct{ value, want string }{
		{"-1", "recipe.yaml:13: train.val_windows: -1: a number of windows, or all (every window)"},
		{"some", `recipe.yaml:13: train.val_windows: expected a whole number or all, got "some"`},
		{"2.5", `recipe.yaml:13: train.val_windows: expected a whole number or all, got "2.5"`},
	} {
		body := strings.Replace(good, "  learning_rate: 1e-3", "  learning_rate: 1e-3\n  val_windows: "+c.value, 1)
		if _, err := Load(write(t, body), nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("val_windows: %s: err = %v, want %q", c.value, err, c.want)
		}
	}
	body = strings.Replace(good, "  learning_rate: 1e-3", "  learning_rate: 1e-3\n  val_window: 8", 1)
	if _, err := Load(write(t, body), nil); err == nil || !strings.Contains(err.Error(), `recipe.yaml:13: train: unknown key "val_window" (did you mean "val_windows"?)`) {
		t.Errorf("misspelled val_windows: %v", err)
	}
}

// TestDedupeKeys: data.dedupe and data.near_duplicate default to exact and
// 0.8, take their documented values, and a bad one names its line.
func TestDedupeKeys(t *testing.T) {
	r, err := Load(write(t, good), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Data.Dedupe != "exact" || r.Data.NearDuplicate == nil || *r.Data.NearDuplicate != 0.8 {
		t.Fatalf("defaults: dedupe %q, near_duplicate %v", r.Data.Dedupe, r.Data.NearDuplicate)
	}
	r, err = Load(write(t, good), []string{"data.dedupe=near", "data.near_duplicate=0.9"})
	if err != nil || r.Data.Dedupe != "near" || *r.Data.NearDuplicate != 0.9 {
		t.Fatalf("near 0.9: %v %+v", err, r)
	}
	if r, err = Load(write(t, good), []string{"data.keep_duplicates=true"}); err != nil || r.Data.Dedupe != "none" {
		t.Fatalf("keep_duplicates: %v", err)
	}
	for _, c := range [][2]string{
		{"data.dedupe=fuzzy", "data.dedupe: \"fuzzy\": use exact, near or none"},
		{"data.near_duplicate=1.5", "data.near_duplicate: 1.5 is not within [0, 1]"},
	} {
		if _, err := Load(write(t, good), []string{c[0]}); err == nil || !strings.Contains(err.Error(), c[1]) {
			t.Errorf("%s: err = %v, want %q", c[0], err, c[1])
		}
	}
	if _, err := Load(write(t, good), []string{"data.dedupe=near", "data.near_duplicate=0"}); err == nil || !strings.Contains(err.Error(), "near needs a near_duplicate") {
		t.Errorf("near with 0: %v", err)
	}
}

// TestTrackSection: track.mlflow is an http(s) address without
// credentials, or off; the resolved recipe keeps the section.
func TestTrackSection(t *testing.T) {
	r, err := Load(write(t, good), []string{"track.mlflow=http://127.0.0.1:5000", "track.experiment=support", "track.tensorboard=false"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Track.MLflow != "http://127.0.0.1:5000" || r.Track.Experiment != "support" || r.Track.TensorBoard == nil || *r.Track.TensorBoard {
		t.Fatalf("track: %+v", r.Track)
	}
	y, err := r.YAML()
	if err != nil || !strings.Contains(string(y), "mlflow: http://127.0.0.1:5000") {
		t.Fatalf("resolved recipe lacks the track section: %v\n%s", err, y)
	}
	if _, err := Load(write(t, good), []string{"track.mlflow=off"}); err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{
		"track.mlflow=http://me:secret@mlflow.example:5000": "track.mlflow: the address holds credentials: remove them and set MLFLOW_TRACKING_USERNAME",
		"track.mlflow=file:///tmp/mlruns":                   `track.mlflow: "file:///tmp/mlruns" is not the http:// or https:// address`,
		"track.mlflow=mlflow.example:5000":                  "is not the http:// or https:// address",
	} {
		_, err := Load(write(t, good), []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want %q", set, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error repeats the password: %v", err)
		}
	}
}
