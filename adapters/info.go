package adapters

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/finetune-dev/finetune/internal/atomicfile"
)

// InfoFormat is the Format of every Info.
const InfoFormat = "llama.cpp GGUF LoRA adapter"

// Info is what an adapter is and how it was made: the JSON file beside the
// adapter (InfoPath), written by the trainer and read by eval, export and
// publish.
type Info struct {
	Format    string    `json:"format"`
	Adapter   string    `json:"adapter"` // the adapter's file name, in the same folder
	Base      BaseInfo  `json:"base_model"`
	LoRA      LoRAInfo  `json:"lora"`
	Training  Training  `json:"training"`
	Optimizer Optimizer `json:"optimizer"`
	// TensorDataSHA256 is the digest of the adapter's tensor data, as its
	// GGUF metadata records it (gguf.TensorDataKey).
	TensorDataSHA256 string `json:"tensor_data_sha256,omitempty"`
	// Recipe is the resolved recipe the adapter was trained with.
	Recipe     any    `json:"recipe,omitempty"`
	WrittenUTC string `json:"written_utc"`
}

// BaseInfo names the base model trained on.
type BaseInfo struct {
	Path   string `json:"path"` // absolute
	SHA256 string `json:"sha256"`
}

// LoRAInfo holds the adapter's settings.
type LoRAInfo struct {
	Targets []string `json:"targets"`
	// AddedTargets are the targets the run added to the recipe's default
	// ones (output, for a base that does not produce its stop token).
	AddedTargets []string `json:"added_targets,omitempty"`
	Rank         int      `json:"rank"`
	Alpha        float64  `json:"alpha"`
	RSLoRA       bool     `json:"rslora"`
	Scale        float64  `json:"scale"`
	Dropout      float64  `json:"dropout"`
}

// Training summarises the training run.
type Training struct {
	Steps        int      `json:"steps"`
	TokensSeen   int64    `json:"tokens_seen"`
	TrainLoss    float64  `json:"final_train_loss"`
	ValLoss      *float64 `json:"final_val_loss,omitempty"`
	BestValLoss  *float64 `json:"best_val_loss,omitempty"`
	BestStep     int      `json:"best_step,omitempty"`
	StoppedEarly bool     `json:"stopped_early"`
	Interrupted  bool     `json:"interrupted"`
	// WallSeconds is the run's wall time, from reading its data to
	// writing the adapter, validation and checkpoints included, summed
	// over the sessions of a resumed run; StepsSeconds the part spent
	// computing optimizer steps and ValSeconds in validation passes.
	WallSeconds  float64 `json:"wall_seconds"`
	StepsSeconds float64 `json:"steps_seconds"`
	ValSeconds   float64 `json:"val_seconds,omitempty"`
	// ValPasses is how many times the validation windows were read
	// (every eval_every steps and at the last step).
	ValPasses int `json:"val_passes,omitempty"`
	// ValWindows is how many validation windows each pass read, of the
	// ValWindowsTotal that hold targets (a seeded sample, the same windows
	// at every pass, when fewer).
	ValWindows      int `json:"val_windows,omitempty"`
	ValWindowsTotal int `json:"val_windows_total,omitempty"`
	TrainableVals   int `json:"trainable_parameters"`
}

// Optimizer holds AdamW's settings.
type Optimizer struct {
	Name        string    `json:"name"`
	LR          float64   `json:"lr"`
	Schedule    string    `json:"schedule"`
	WarmupSteps int       `json:"warmup_steps"`
	WeightDecay float64   `json:"weight_decay"`
	Betas       []float64 `json:"betas"`
	Eps         float64   `json:"eps"`
	GradAccum   int       `json:"grad_accum"`
	ClipNorm    float64   `json:"clip_norm"`
	Seed        uint64    `json:"seed"`
}

// InfoPath is where an adapter's Info lives: beside it, named as the
// adapter with .json for .gguf (adapter.gguf → adapter.json).
func InfoPath(adapter string) string {
	return strings.TrimSuffix(adapter, ".gguf") + ".json"
}

// WriteInfo writes info atomically.
func WriteInfo(path string, info *Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}

// ReadInfo reads the Info of an adapter file. It returns an error wrapping
// os.ErrNotExist when the adapter has none.
func ReadInfo(adapter string) (*Info, error) {
	path := InfoPath(adapter)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if info.Format != InfoFormat {
		return nil, fmt.Errorf("%s: not an adapter description (format %q)", path, info.Format)
	}
	return &info, nil
}

// TrainedBase is the SHA-256 digest of the base an adapter was trained on,
// as its Info records it ("" when it has no Info, or one for another
// file).
func TrainedBase(adapter string) string {
	info, err := ReadInfo(adapter)
	if err != nil || info.Adapter != filepath.Base(adapter) {
		return ""
	}
	return info.Base.SHA256
}
