package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/finetune-dev/finetune/adapters/publish"
	"github.com/finetune-dev/finetune/internal/atomicfile"
)

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
	// As is the form to publish: adapter, merged or auto (default: the
	// recipe's publish.as, else auto).
	As string
	// ModelfileOnly writes the Modelfile without a server.
	ModelfileOnly bool
	Options       map[string]any // Ollama options for the smoke request
	Threads       int
	Logger        *slog.Logger // publish.Options.Logger
}

// publishOptions maps a run and the caller's options onto publish's:
// the caller's name, host, form, base and chat template win over the recipe's
// publish section and data.template; a run whose base came from Ollama is
// published FROM that model unless another base is given.
func publishOptions(run *Run, o PublishOptions) (publish.Options, error) {
	po := publish.Options{Name: o.Name, Host: o.Host, Base: run.Base(), Adapter: run.Adapter(),
		Template: publish.TemplateSpec{Given: o.Template}, Options: o.Options, Threads: o.Threads,
		ModelfileDir: run.Dir, ModelfileOnly: o.ModelfileOnly, Logger: o.Logger,
		As: o.As, Merged: run.Path(MergedFile)}
	if r := run.Recipe; r != nil {
		if po.Name == "" {
			po.Name = r.Publish.Ollama
		}
		if po.Host == "" {
			po.Host = r.Publish.Host
		}
		if po.As == "" {
			po.As = r.Publish.As
		}
		po.Template.Train = r.Data.Template
		if name, ok := strings.CutPrefix(r.Base, "ollama:"); ok {
			po.FromOllama = name
		}
		if po.Name == "" && o.ModelfileOnly {
			po.Name = r.Name
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
	if po.Name == "" {
		return po, fmt.Errorf("%s: no Ollama model name: give --ollama NAME, or set publish.ollama in the recipe", run.Dir)
	}
	return po, nil
}

// Publish publishes the run's adapter to Ollama (publish.Ollama): from the
// Ollama model the base came from when the recipe's base was ollama:NAME,
// asking the first case of the run's eval split as the smoke test, and
// writing the Modelfile and publish.json into the run folder once the
// model has answered. The run is locked for it.
func (run *Run) Publish(ctx context.Context, o PublishOptions) (*publish.Result, error) {
	if _, err := os.Stat(run.Adapter()); err != nil {
		return nil, fmt.Errorf("%s: no %s in this run folder (did the training finish?)", run.Dir, AdapterFile)
	}
	po, err := publishOptions(run, o)
	if err != nil {
		return nil, err
	}
	if err := run.Lock("finetune publish", o.Logger); err != nil {
		return nil, err
	}
	po.Logger = run.Logger()
	if o.ModelfileOnly {
		return publish.Ollama(ctx, po)
	}
	if r := run.Recipe; r != nil {
		cases, _, err := Cases(r, po.Base)
		if err != nil {
			po.Logger.Info("the smoke test asks a greeting: the run's eval cases are not readable", "err", err)
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
	if err := atomicfile.Write(run.Path(PublishFile), append(b, '\n')); err != nil {
		return res, fmt.Errorf("published %s, but writing %s failed: %w", res.Model, PublishFile, err)
	}
	return res, nil
}
