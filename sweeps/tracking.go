package sweeps

import (
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/finetune-dev/finetune/runs"
	"github.com/finetune-dev/finetune/track"
)

// openTracker tracks the sweep as the parent MLflow run of its trials'
// runs (made once, recorded in the sweep folder's track.MLflowFile); nil
// when the recipe tracks no MLflow server.
func (s *Sweep) openTracker(log *slog.Logger) *track.Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := s.Spec.recipe(s.Spec.Overrides)
	if err != nil {
		log.Warn("tracking is off for this sweep: its recipe does not load", "err", err)
		return nil
	}
	cfg := runs.TrackConfig(r, s.Dir, s.Spec.Name+"/sweep-"+filepath.Base(s.Dir))
	if cfg.MLflow == "" {
		return nil
	}
	cfg.TensorBoard = false // each trial's run folder has its own
	cfg.Logger = log
	cfg.Params = map[string]string{"sweep.trials": strconv.Itoa(len(s.Spec.Trials)), "sweep.metric": s.Spec.Metric.String(), "sweep.executor": s.Spec.Executor}
	for _, a := range s.Spec.Axes {
		cfg.Params["sweep.grid."+a.Key] = "[" + strings.Join(a.Values, ", ") + "]"
	}
	for _, o := range s.Spec.Overrides {
		k, v, _ := strings.Cut(o, "=")
		cfg.Params["set."+k] = v
	}
	cfg.Tags = map[string]string{"finetune.sweep": s.Dir}
	t, err := track.Open(cfg)
	if err != nil {
		log.Warn("tracking is off for this sweep", "err", err)
		return nil
	}
	return t
}

// trackParent is the sweep's MLflow run, "" when it has none.
func (s *Sweep) trackParent() string {
	if rec := track.ReadRecord(s.Dir); rec != nil {
		return rec.RunID
	}
	return ""
}

// trackLeaderboard sends the leaderboard to the sweep's MLflow run, which
// is finished once every trial is.
func (s *Sweep) trackLeaderboard(lb *Leaderboard, log *slog.Logger) {
	t := s.openTracker(log)
	if t == nil {
		return
	}
	defer t.Close()
	for _, f := range []string{LeaderboardMD, LeaderboardHTML, LeaderboardJSON} {
		t.Artifact(s.Path(f), f)
	}
	for _, row := range lb.Trials {
		if row.State != Done && row.State != Failed {
			return
		}
	}
	t.End("FINISHED")
}
