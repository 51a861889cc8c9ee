package runs

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/lora"
	"github.com/finetune-dev/finetune/recipes"
	"github.com/finetune-dev/finetune/track"
)

// TrackConfig is where the figures of a run of recipe r in folder dir go:
// the recipe's track section, else MLFLOW_TRACKING_URI and
// MLFLOW_EXPERIMENT_NAME; the recipe, as trained, is the MLflow run's
// parameters.
func TrackConfig(r *recipes.Recipe, dir, name string) track.Config {
	t := r.Track
	uri := cmp.Or(t.MLflow, os.Getenv("MLFLOW_TRACKING_URI"))
	if uri == "off" {
		uri = ""
	}
	return track.Config{
		Dir:         dir,
		TensorBoard: t.TensorBoard == nil || *t.TensorBoard,
		MLflow:      uri,
		Experiment:  cmp.Or(t.Experiment, os.Getenv("MLFLOW_EXPERIMENT_NAME"), r.Name),
		RunName:     name,
		Params:      RecipeParams(r),
	}
}

// RecipeParams is the recipe as flat key paths (lora.rank: "8"), the form
// --set takes; lists and maps below them are written as YAML flow.
func RecipeParams(r *recipes.Recipe) map[string]string {
	y, err := r.YAML()
	if err != nil {
		return nil
	}
	var tree map[string]any
	if yaml.Unmarshal(y, &tree) != nil {
		return nil
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(strings.TrimPrefix(prefix+"."+k, "."), v[k])
			}
		case nil:
		case []any:
			b, _ := yaml.Marshal(v)
			var flow yaml.Node
			if yaml.Unmarshal(b, &flow) == nil && len(flow.Content) > 0 {
				setFlow(flow.Content[0])
				if fb, err := yaml.Marshal(flow.Content[0]); err == nil {
					b = fb
				}
			}
			out[prefix] = strings.TrimSpace(string(b))
		default:
			out[prefix] = fmt.Sprint(v)
		}
	}
	walk("", tree)
	return out
}

func setFlow(n *yaml.Node) {
	n.Style = yaml.FlowStyle
	for _, c := range n.Content {
		setFlow(c)
	}
}

// openTracker starts tracking the run (running: its training), logging
// to the run's logger; a recipe whose tracker cannot work is logged and
// the run goes on untracked.
func (run *Run) openTracker(running bool, parent string) *track.Tracker {
	if run.Recipe == nil {
		return nil
	}
	cfg := TrackConfig(run.Recipe, run.Dir, run.Recipe.Name+"/"+filepath.Base(run.Dir))
	cfg.Running = running
	cfg.ParentRunID = parent
	cfg.Logger = run.Logger()
	cfg.Tags = map[string]string{"finetune.base": run.Record.Base.Ref, "finetune.base_sha256": run.Record.Base.SHA256}
	t, err := track.Open(cfg)
	if err != nil {
		// An MLFLOW_TRACKING_URI that is no server's address (the
		// recipe's own is checked when it loads).
		run.Logger().Warn("mlflow: tracking is off for this run", "err", err)
		cfg.MLflow = ""
		t, _ = track.Open(cfg)
	}
	return t
}

// stepScalars are the trainer's figures of one step, as the trackers
// name them.
func stepScalars(m lora.Metrics) map[string]float64 {
	v := map[string]float64{
		"train/loss": m.Loss, "train/learning_rate": m.LR, "train/grad_norm": m.GradNorm,
		"train/tokens_per_s": m.TokensPerSec, "train/epoch": m.Epoch, "train/tokens": float64(m.Tokens),
	}
	if m.ValLoss != nil {
		v["train/val_loss"] = *m.ValLoss
	}
	return v
}

// trackEval sends an eval's scores, with their 95% intervals, and its
// reports to the run's trackers, at the run's last step.
func (run *Run) trackEval(res *evals.Results, out string) {
	t := run.openTracker(false, "")
	if t == nil {
		return
	}
	defer t.Close()
	step := run.Record.Steps
	v := map[string]float64{}
	for _, c := range res.Contestants {
		for col, s := range c.Scores {
			if s.N == 0 {
				continue
			}
			k := "eval/" + c.Name + "/" + col
			v[k], v[k+"/ci_low"], v[k+"/ci_high"] = s.Value, s.Low, s.High
		}
	}
	for _, c := range res.Comparisons {
		if c.Against != res.Base || c.N == 0 {
			continue
		}
		k := "eval/" + c.Contestant + "_vs_" + c.Against + "/" + c.Column
		v[k], v[k+"/ci_low"], v[k+"/ci_high"] = c.Diff, c.Low, c.High
	}
	t.Scalars(step, v)
	if md, err := os.ReadFile(filepath.Join(out, "report.md")); err == nil {
		t.Text(step, "eval/headline", headline(string(md)))
	}
	rel, err := filepath.Rel(run.Dir, out)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Base(out)
	}
	for _, f := range []string{"results.json", "report.md", "report.html"} {
		t.Artifact(filepath.Join(out, f), filepath.ToSlash(filepath.Join(rel, f)))
	}
	t.Artifact(run.Path(AdapterInfoFile), AdapterInfoFile)
}

// headline is report.md's headline section.
func headline(md string) string {
	_, h, ok := strings.Cut(md, "## Headline\n")
	if !ok {
		return md
	}
	h, _, _ = strings.Cut(h, "\n## ")
	return strings.TrimSpace(h)
}
