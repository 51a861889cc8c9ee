package job

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/recipes"
)

// resolvedFrom starts the first line of a run folder's recipe.yaml, before
// the absolute path of the recipe it was resolved from.
const resolvedFrom = "# Resolved from "

// PublishFile is the record of the last publish in a run folder.
const PublishFile = "publish.json"

// Run is a finished training run folder.
type Run struct {
	Dir     string
	Adapter string
	Base    string // the base GGUF trained on
	// Recipe is the run's resolved recipe, its relative data paths
	// starting at the folder of the recipe it was resolved from (nil when
	// the run folder has no recipe.yaml).
	Recipe *recipes.Recipe
}

// OpenRun reads a run folder that holds an adapter.
func OpenRun(dir string) (*Run, error) {
	run := &Run{Dir: dir, Adapter: filepath.Join(dir, AdapterFile)}
	if _, err := os.Stat(run.Adapter); err != nil {
		return nil, fmt.Errorf("%s: no %s in this run folder (did the training finish?)", dir, AdapterFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, BaseFile))
	if err != nil {
		return nil, fmt.Errorf("%s: no %s naming the base model; give --base", dir, BaseFile)
	}
	run.Base = strings.TrimSpace(string(b))
	path := filepath.Join(dir, RecipeFile)
	src, err := os.ReadFile(path)
	if err != nil {
		return run, nil
	}
	r, err := recipes.Parse(path, src)
	if err != nil {
		return nil, err
	}
	first, _, _ := strings.Cut(string(src), "\n")
	if orig, ok := strings.CutPrefix(first, resolvedFrom); ok {
		orig = strings.TrimSuffix(orig, " (defaults filled in).")
		if filepath.IsAbs(orig) {
			r.Dir = filepath.Dir(orig)
		}
	}
	run.Recipe = r
	return run, nil
}

// PublishOptions of a run's publish.
type PublishOptions struct {
	Name string // the Ollama model (default: the recipe's publish.ollama)
	Host string // default: the recipe's publish.host
	// Base overrides the run's base: a GGUF file or ollama:NAME.
	Base string
	// Template is an Ollama template text to serve with, checked against
	// training's.
	Template string
	// ChatTemplate overrides the chat template training used (the
	// recipe's data.template).
	ChatTemplate string
	// ModelfileOnly writes the Modelfile without a server.
	ModelfileOnly bool
	Options       map[string]any // Ollama options for the smoke request
	Threads       int
	Logger        *slog.Logger // publish.Options.Logger
}

// Publish publishes a run's adapter to Ollama (adapters.PublishOllama):
// from the Ollama model the base came from when the recipe's base was
// ollama:NAME, asking the first case of the recipe's eval split as the
// smoke test, and writing the Modelfile and publish.json into the run
// folder once the model has answered.
func Publish(ctx context.Context, run *Run, o PublishOptions) (*publish.Result, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	po := publish.Options{Name: o.Name, Host: o.Host, Base: run.Base, Adapter: run.Adapter,
		Template: publish.TemplateSpec{Given: o.Template}, Options: o.Options, Threads: o.Threads,
		ModelfileDir: run.Dir, ModelfileOnly: o.ModelfileOnly, Logger: o.Logger}
	r := run.Recipe
	if r != nil {
		if po.Name == "" {
			po.Name = r.Publish.Ollama
		}
		if po.Host == "" {
			po.Host = r.Publish.Host
		}
		po.Template.Train = r.Data.Template
		if name, ok := strings.CutPrefix(r.Base, "ollama:"); ok {
			po.FromOllama = name
		}
	}
	switch {
	case strings.HasPrefix(o.Base, "ollama:"):
		po.FromOllama = strings.TrimPrefix(o.Base, "ollama:")
	case o.Base != "":
		po.Base, po.FromOllama = o.Base, ""
	}
	if o.ChatTemplate != "" {
		po.Template.Train = o.ChatTemplate
	}
	if po.Name == "" && o.ModelfileOnly && r != nil {
		po.Name = r.Name
	}
	if po.Name == "" {
		return nil, fmt.Errorf("%s: no Ollama model name: give --ollama NAME, or set publish.ollama in the recipe", run.Dir)
	}
	if o.ModelfileOnly {
		return publish.Ollama(ctx, po)
	}
	if r != nil {
		cases, err := Cases(r, po.Base)
		if err != nil {
			o.Logger.Info("the smoke test asks a greeting: the run's eval cases are not readable", "err", err)
		} else {
			po.Case = &cases[0]
			po.MaxTokens = min(r.Eval.Generation.MaxTokens, 128)
		}
	}
	res, err := publish.Ollama(ctx, po)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := atomicfile.Write(filepath.Join(run.Dir, PublishFile), append(b, '\n')); err != nil {
		return res, fmt.Errorf("published %s, but writing %s failed: %w", res.Model, PublishFile, err)
	}
	return res, nil
}
