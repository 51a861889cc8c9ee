// Package publish serves tuned adapters through Ollama: it creates an
// Ollama model from a base and a LoRA adapter, or from the two merged
// where the server takes no adapters (Options.As, FormFor), checked
// before upload and smoke-tested after, and writes the Modelfile that
// recreates it
// (publish.go), with a chat template in Ollama's language that renders
// chats exactly as training did (template.go).
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"
	"github.com/ollama/ollama/types/model"

	"github.com/finetune-dev/finetune/adapters"
	"github.com/finetune-dev/finetune/evals"
	"github.com/finetune-dev/finetune/internal/atomicfile"
	"github.com/finetune-dev/finetune/internal/filehash"
	"github.com/finetune-dev/finetune/internal/gguf"
	"github.com/finetune-dev/finetune/internal/llama"
	"github.com/finetune-dev/finetune/internal/ollamahost"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// Options say what to publish to which Ollama server.
type Options struct {
	// Host is the server (default $OLLAMA_HOST, else
	// http://127.0.0.1:11434).
	Host string
	// Name is the model to create, e.g. "support-bot" or
	// "team/support-bot:v2". A model of that name is replaced only once
	// the new one has answered.
	Name string
	// Base is the GGUF the adapter was trained on, checked against the
	// digest the adapter.json beside the adapter records, when there is one.
	Base string
	// FromOllama names the Ollama model the base came from: the new
	// model is created FROM it instead of uploading the base again.
	FromOllama string
	Adapter    string
	Template   TemplateSpec
	// Case is the smoke test's conversation, with the tokens training
	// rendered for it when it came from the run's data; nil: a greeting.
	Case *evals.Case
	// MaxTokens of the smoke test's answers (0: 64).
	MaxTokens int
	// Options are more Ollama options for the smoke request (num_thread,
	// num_ctx, ...).
	Options map[string]any
	// NoSmoke creates and names the model without asking it the smoke
	// test, for a server that cannot run models (its runner is missing).
	NoSmoke bool
	// Threads of the local model answering the smoke test (0: every core).
	Threads int
	// ModelfileDir, when not "", gets a Modelfile that recreates the model
	// with `ollama create NAME -f Modelfile`.
	ModelfileDir string
	// ModelfileOnly checks the adapter and the template and writes the
	// Modelfile without a server: nothing is uploaded or created, and a
	// base from Ollama is not checked against the server's model.
	ModelfileOnly bool
	// As is the form the tuned model is served in: AsAdapter (the base
	// with the adapter), AsMerged (the adapter folded into the base) or
	// AsAuto (""): the form the server's version serves (FormFor), and a
	// merged model if the server refuses the adapter at create.
	As string
	// Merged is where the merged model is kept once published (default:
	// ModelfileDir's MergedName; with neither, it is not kept).
	Merged string
	// MergeType is the merged model's file type (default: the base's own).
	MergeType string
	// Logger is told, at info level, of each step: hashing, uploading,
	// creating, asking (nil logs nothing).
	Logger     *slog.Logger
	HTTPClient *http.Client
}

// Result says what was published and how its first answer compared
// with the tuned model run in-process.
type Result struct {
	Model string `json:"model"`
	Host  string `json:"host"`
	From  string `json:"from"` // the base: "sha256:…" uploaded, or an Ollama model
	// As is the form published: AsAdapter or AsMerged.
	As      string `json:"as"`
	Version string `json:"server_version,omitempty"`
	Adapter string `json:"adapter_digest,omitempty"`
	// Merged is the merged model's digest, MergedType its file type and
	// MergeCheck its answer against the base with the adapter.
	Merged     string      `json:"merged_digest,omitempty"`
	MergedType string      `json:"merged_type,omitempty"`
	MergeCheck *MergeCheck `json:"merge_check,omitempty"`
	// MergeFallback says why the merged model is not of the base's own
	// type: at that type it did not answer as the tuned model.
	MergeFallback string   `json:"merge_fallback,omitempty"`
	Uploaded      []string `json:"uploaded,omitempty"` // blobs sent
	Present       []string `json:"present,omitempty"`  // blobs the server already had
	Template      string   `json:"template"`           // where the chat template came from
	Stop          []string `json:"stop,omitempty"`
	Smoke         Smoke    `json:"smoke"`
	// Modelfile is the file written, if any.
	Modelfile string `json:"modelfile,omitempty"`
}

// Smoke is the smoke test: one chat request to the new model, and the
// tuned model's greedy answer to the same conversation in-process.
type Smoke struct {
	Prompt    string `json:"prompt"` // the conversation's last message
	Served    string `json:"served"`
	Local     string `json:"local"`
	Identical bool   `json:"identical"`
	// Prefix: the served answer is the start of the in-process one
	// (Ollama stops answers that repeat one token over 30 times).
	Prefix   bool    `json:"prefix,omitempty"`
	Agree    int     `json:"agree"` // characters the answers share from the start
	ServedMS float64 `json:"served_ms"`
}

// ModelfileName is the file Ollama writes into ModelfileDir.
const ModelfileName = "Modelfile"

// MergedName is the merged model's file in ModelfileDir, the Modelfile's
// FROM for a merged model.
const MergedName = "model.gguf"

// The forms a tuned model is published in (Options.As).
const (
	AsAuto    = "auto"
	AsAdapter = "adapter"
	AsMerged  = "merged"
)

// FormFor is the form an Ollama server of the given version serves a
// tuned llama model in: before 0.34.1 the adapter (Ollama's own llama.cpp
// runner before 0.30, llama-server's --lora from 0.30), from 0.34.1 a
// merged model (adapters are refused: "LoRA adapters are no longer
// supported"). A version that does not parse (a development build's
// "0.0.0" does) gets the adapter.
func FormFor(version string) string {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		v = v[:i]
	}
	var n [3]int
	parts := strings.Split(v, ".")
	for i := 0; i < len(parts) && i < 3; i++ {
		x, err := strconv.Atoi(parts[i])
		if err != nil {
			return AsAdapter
		}
		n[i] = x
	}
	if n[0] > 0 || n[1] > 34 || (n[1] == 34 && n[2] >= 1) {
		return AsMerged
	}
	return AsAdapter
}

// MergeCheck compares the merged model's greedy answer to the smoke
// test's conversation with the base's with the adapter, both in-process,
// before anything is uploaded.
type MergeCheck struct {
	Merged    string `json:"merged"`
	Local     string `json:"local"` // the base with the adapter
	Identical bool   `json:"identical"`
	Agree     int    `json:"agree"` // characters the answers share from the start
	// Where the answers part: the tokens they share, each side's next
	// token, and its log-probability under both models (natural log).
	Part *Divergence `json:"part,omitempty"`
}

// Divergence is where two greedy answers part, and how close the choice
// was: a merged model quantized to fewer bits turns near-ties, where the
// two picks' log-probabilities differ by a few hundredths, the other way.
type Divergence struct {
	AfterTokens int    `json:"after_tokens"`
	Merged      string `json:"merged_token"` // "" where the merged answer ended
	Local       string `json:"local_token"`  // "" where that answer ended
	// Log-probabilities of the merged model's pick and of the base with
	// the adapter's pick, under the merged model and under the base with
	// the adapter.
	MergedPickInMerged float64 `json:"merged_pick_in_merged"`
	MergedPickInLocal  float64 `json:"merged_pick_in_local"`
	LocalPickInMerged  float64 `json:"local_pick_in_merged"`
	LocalPickInLocal   float64 `json:"local_pick_in_local"`
}

// Gap is the largest difference between the two models' log-probability
// of either pick.
func (d *Divergence) Gap() float64 {
	return max(math.Abs(d.MergedPickInMerged-d.MergedPickInLocal), math.Abs(d.LocalPickInMerged-d.LocalPickInLocal))
}

// errAdapterRefused marks a server's refusal of an adapter at create.
var errAdapterRefused = errors.New("the server refuses LoRA adapters")

// Ollama creates an Ollama model that serves the base with the
// adapter:
//
//  1. the adapter is loaded with the base by the bundled llama.cpp, the
//     engine of Ollama's runner, so a broken or mismatched adapter is
//     refused before anything is sent (Ollama itself would accept it and
//     fail at the first request);
//  2. the chat template is one that renders chats exactly as training did
//     (ResolveTemplate), with its stop parameters;
//  3. the base GGUF (unless the base is an Ollama model, checked to be the
//     very weights trained on) and the adapter are uploaded as blobs,
//     skipping blobs the server has, and checked to be there after;
//  4. the model is created under a temporary name and asked one chat
//     request; only when it answers is it copied to Name (replacing any
//     model of that name) and the temporary name removed;
//  5. the tuned model's greedy answer in-process is compared with the
//     served one.
//
// Published as a merged model (Options.As), the adapter is first folded
// into the base (adapters.Merge, the base's own type unless MergeType
// says otherwise), the merged model is loaded and its greedy answer
// compared with the base with the adapter in-process (Result.MergeCheck),
// and it goes up as the one blob the model is created from; it is kept as
// Options.Merged once published.
//
// Nothing is written before the model answers; then the Modelfile.
func Ollama(ctx context.Context, o Options) (*Result, error) {
	p, err := newPublisher(o)
	if err != nil {
		return nil, err
	}
	return p.publish(ctx)
}

type publisher struct {
	o      Options
	host   string
	client *api.Client
	http   *http.Client
	res    *Result
}

func newPublisher(o Options) (*publisher, error) {
	if o.Name == "" {
		return nil, errors.New("publish: no model name given (--ollama NAME, or publish.ollama in the recipe)")
	}
	if !model.ParseName(o.Name).IsValid() {
		return nil, fmt.Errorf("publish: %q is not an Ollama model name (like support-bot, team/support-bot or support-bot:v2)", o.Name)
	}
	u, err := ollamahost.URL(o.Host)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 64
	}
	switch o.As {
	case "":
		o.As = AsAuto
	case AsAuto, AsAdapter, AsMerged:
	default:
		return nil, fmt.Errorf("publish: --as %q: use adapter, merged or auto", o.As)
	}
	if o.Merged == "" && o.ModelfileDir != "" {
		o.Merged = filepath.Join(o.ModelfileDir, MergedName)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	host := u.String()
	return &publisher{o: o, host: host, client: api.NewClient(u, hc), http: hc, res: &Result{Model: o.Name, Host: host}}, nil
}

func (p *publisher) publish(ctx context.Context) (*Result, error) {
	o := p.o
	if o.ModelfileOnly && o.ModelfileDir == "" {
		return nil, errors.New("publish: a Modelfile needs a folder to go to (a run folder)")
	}
	as := o.As
	if !o.ModelfileOnly {
		v, err := p.client.Version(ctx)
		if err != nil {
			return nil, p.serverError("reach", err)
		}
		p.res.Version = v
		if form := FormFor(v); as == AsAuto {
			as = form
			o.Logger.Info("publishing as "+as, "ollama", v)
		} else if as == AsAdapter && form == AsMerged {
			return nil, p.adapterRefused(nil)
		}
	} else if as == AsAuto {
		as = AsAdapter
	}
	if as != AsMerged {
		f, err := llama.OpenGGUF(o.Base)
		if err != nil {
			return nil, err
		}
		untied, err := llama.NeedsUntied(o.Adapter, f)
		if err != nil {
			return nil, err
		}
		switch {
		case untied && as == AsAdapter && o.As == AsAdapter:
			return nil, fmt.Errorf("publish: %s updates the output head or the token embedding, which %s ties together: Ollama's runner cannot apply it to that base; publish it merged (--as merged)", o.Adapter, o.Base)
		case untied:
			as = AsMerged
			o.Logger.Info("publishing merged: the adapter updates the output head or the token embedding, which the base ties together", "base", o.Base)
		}
	}

	// 1. The adapter in the engine Ollama's runner uses.
	local, err := evals.NewLocal("tuned", evals.LocalOptions{
		Model: o.Base, Adapters: []evals.AdapterSpec{{Path: o.Adapter}},
		Settings: evals.Settings{MaxTokens: o.MaxTokens, Seed: 42}, Sequences: 1, Threads: o.Threads,
		Template: localTemplate(o.Template.Train),
	})
	if err != nil {
		var corrupt *gguf.CorruptError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("%w; nothing was uploaded", corrupt)
		}
		msg := strings.TrimPrefix(err.Error(), "contestant tuned: ")
		return nil, fmt.Errorf("%s does not load with %s in llama.cpp, so Ollama could not serve it either: %s; nothing was uploaded", o.Adapter, o.Base, msg)
	}
	defer local.Close()

	// The base must be the one trained on, by digest.
	p.o.Logger.Info("hashing the base", "file", o.Base)
	baseDigest, baseSize, err := blobDigest(o.Base)
	if err != nil {
		return nil, err
	}
	if want := adapters.TrainedBase(o.Adapter); want != "" && "sha256:"+want != baseDigest {
		return nil, fmt.Errorf("base mismatch: %s (%s) is not the base the adapter was trained on (%s, as %s records); give the base it was trained on; nothing was uploaded",
			o.Base, short(baseDigest), short("sha256:"+want), adapters.InfoPath(o.Adapter))
	}

	// 2. The chat template, and 3. the blobs.
	if o.FromOllama != "" && !o.ModelfileOnly {
		show, err := p.client.Show(ctx, &api.ShowRequest{Model: o.FromOllama})
		if err != nil {
			return nil, p.serverError("find the base model "+o.FromOllama+" on", err)
		}
		if err := p.checkOllamaBase(show, baseDigest); err != nil {
			return nil, err
		}
		o.Template.Inherited, o.Template.InheritedFrom, o.Template.InheritedStop = show.Template, o.FromOllama, stopsOf(show.Parameters)
	}
	if o.Template.Train == "" {
		f, err := gguf.Open(o.Base)
		if err != nil {
			return nil, err
		}
		o.Template.Model, _ = f.String("tokenizer.chat_template")
	}
	tmpl, err := ResolveTemplate(o.Template)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", o.Name, err)
	}
	p.res.Template, p.res.Stop = tmpl.Source, tmpl.Stop
	cs := evals.Case{Prompt: []evals.Message{{Role: "user", Content: "Hello! What can you help me with?"}}}
	if o.Case != nil {
		cs = *o.Case
	} else if o.Template.Train == "none" {
		cs.RenderedPrompt = cs.Prompt[0].Content
	}
	var merged string // the merged model; its temporary folder goes at the end
	defer func() {
		if merged != "" {
			os.RemoveAll(filepath.Dir(merged))
		}
	}()
	mergeNow := func() (string, error) {
		m, err := p.merge(ctx, local, cs)
		merged = m
		return m, err
	}
	if o.ModelfileOnly {
		p.res.Host, p.res.From = "", o.FromOllama
		if p.res.From == "" {
			p.res.From = baseDigest
		}
		p.res.As = as
		if as == AsMerged {
			if _, err := mergeNow(); err != nil {
				return nil, err
			}
			if err := p.keepMerged(merged); err != nil {
				return nil, err
			}
		}
		return p.res, p.writeModelfile(tmpl)
	}
	newReq := func() *api.CreateRequest {
		req := &api.CreateRequest{Template: tmpl.Text}
		if len(tmpl.Stop) > 0 {
			req.Parameters = map[string]any{"stop": tmpl.Stop}
		}
		return req
	}
	var created bool
	if as == AsAdapter {
		req := newReq()
		if o.FromOllama != "" {
			req.From = o.FromOllama
			p.res.From = o.FromOllama
		} else {
			d, err := p.blob(ctx, "base", o.Base, baseDigest, baseSize)
			if err != nil {
				return nil, err
			}
			req.Files = map[string]string{filepath.Base(o.Base): d}
			p.res.From = d
		}
		p.o.Logger.Info("hashing the adapter", "file", o.Adapter)
		ad, adSize, err := blobDigest(o.Adapter)
		if err != nil {
			return nil, err
		}
		if ad, err = p.blob(ctx, "adapter", o.Adapter, ad, adSize); err != nil {
			return nil, err
		}
		req.Adapters = map[string]string{filepath.Base(o.Adapter): ad}
		p.res.Adapter = ad
		err = p.createAndName(ctx, req, tmpl, local, cs)
		switch {
		case errors.Is(err, errAdapterRefused) && o.As == AsAuto:
			o.Logger.Info("the server refuses LoRA adapters: publishing a merged model instead", "ollama", p.res.Version)
			as, p.res.Adapter = AsMerged, ""
		case errors.Is(err, errAdapterRefused):
			return nil, p.adapterRefused(err)
		case err != nil:
			return nil, err
		default:
			created = true
		}
	}
	if !created {
		path, err := mergeNow()
		if err != nil {
			return nil, err
		}
		o.Logger.Info("hashing the merged model", "file", path)
		d, size, err := blobDigest(path)
		if err != nil {
			return nil, err
		}
		if d, err = p.blob(ctx, "merged model", path, d, size); err != nil {
			return nil, err
		}
		req := newReq()
		req.Files = map[string]string{MergedName: d}
		p.res.From, p.res.Merged = d, d
		if err := p.createAndName(ctx, req, tmpl, local, cs); err != nil {
			if errors.Is(err, errAdapterRefused) {
				err = p.adapterRefused(err)
			}
			return nil, err
		}
		if err := p.keepMerged(path); err != nil {
			return p.res, fmt.Errorf("published %s, but %w", o.Name, err)
		}
	}
	p.res.As = as

	// 5. The Modelfile for `ollama create` by hand.
	if err := p.writeModelfile(tmpl); err != nil {
		return p.res, fmt.Errorf("published %s, but %w", o.Name, err)
	}
	return p.res, nil
}

// createAndName creates the model under a temporary name, asks it the
// smoke test, and names it o.Name once it has answered.
func (p *publisher) createAndName(ctx context.Context, req *api.CreateRequest, tmpl OllamaTemplate, local *evals.Local, cs evals.Case) error {
	o := p.o
	tmp := fmt.Sprintf("finetune-publish-%08x", rand.Uint32())
	req.Model = tmp
	o.Logger.Info("creating", "model", o.Name, "template", tmpl.Source)
	if err := p.client.Create(ctx, req, func(r api.ProgressResponse) error { return nil }); err != nil {
		var se api.StatusError
		if len(req.Adapters) > 0 && errors.As(err, &se) && strings.Contains(strings.ToLower(se.ErrorMessage), "adapters are no longer supported") {
			return fmt.Errorf("%w: %s", errAdapterRefused, textfmt.OneLine(se.ErrorMessage))
		}
		return p.serverError("create the model on", err)
	}
	keep := false
	defer func() {
		if !keep {
			// Remove the temporary model (not its blobs: a retry
			// reuses them).
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			p.client.Delete(dctx, &api.DeleteRequest{Model: tmp})
		}
	}()
	if o.NoSmoke {
		o.Logger.Info("not asking the new model (no smoke test asked for)", "model", o.Name)
	} else if err := p.smoke(ctx, tmp, local, cs); err != nil {
		return err
	}
	if err := p.client.Copy(ctx, &api.CopyRequest{Source: tmp, Destination: o.Name}); err != nil {
		return p.serverError("name the model "+o.Name+" on", err)
	}
	if err := p.client.Delete(ctx, &api.DeleteRequest{Model: tmp}); err != nil {
		o.Logger.Info("could not remove the temporary model", "model", tmp, "err", err)
	}
	keep = true
	return nil
}

// adapterRefused is the error for a server that takes no adapters.
func (p *publisher) adapterRefused(err error) error {
	why := "Ollama 0.34.1 and later refuse LoRA adapters"
	if err != nil {
		why = strings.TrimPrefix(err.Error(), errAdapterRefused.Error()+": ")
	}
	return fmt.Errorf("the Ollama server at %s (Ollama %s) does not take LoRA adapters (%s): publish a merged model with --as merged (or --as auto); nothing was created", p.host, p.res.Version, why)
}

// merge folds the adapter into the base in a temporary folder (beside
// where the merged model is kept), loads the result in llama.cpp and
// compares its greedy answer to the smoke test's conversation with the
// base's with the adapter. It returns the merged file.
func (p *publisher) merge(ctx context.Context, local *evals.Local, cs evals.Case) (string, error) {
	o := p.o
	dir := os.TempDir()
	if o.Merged != "" {
		dir = filepath.Dir(o.Merged)
	}
	tmpDir, err := os.MkdirTemp(dir, ".publish-merge-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(tmpDir, MergedName)
	threads := o.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	mergeType := o.MergeType
	for {
		o.Logger.Info("merging the adapter into the base", "base", o.Base, "type", typeOr(mergeType, "the base's"))
		start := time.Now()
		ft, err := adapters.Merge(o.Base, o.Adapter, path, adapters.MergeOptions{Type: mergeType, Threads: threads})
		if err != nil {
			return path, fmt.Errorf("%w; nothing was uploaded", err)
		}
		p.res.MergedType = ft.String()
		o.Logger.Info("merged", "type", ft, "took", time.Since(start).Round(time.Millisecond))
		c, err := p.mergeCheck(ctx, path, local, cs)
		if err != nil {
			return path, err
		}
		p.res.MergeCheck = c
		if c.Identical {
			o.Logger.Info("the merged model answers as the base with the adapter", "type", ft)
			return path, nil
		}
		args := []any{"type", ft, "after_chars", c.Agree, "merged", textfmt.Shorten(c.Merged, 60), "adapter", textfmt.Shorten(c.Local, 60)}
		if d := c.Part; d != nil {
			args = append(args, "after_tokens", d.AfterTokens, "logprob_gap", fmt.Sprintf("%.3g", d.Gap()))
		}
		if mergeType != "" || !below8Bits(ft) {
			o.Logger.Info("the merged model's answer parts from the base with the adapter's", args...)
			return path, nil
		}
		// Requantized to the base's own grid of 4 or 5 bits, a small
		// adapter's change mostly rounds back to the weights it started
		// from (measured on SmolLM2-135M-Instruct Q4_1: none of 6 trained
		// answers kept). Q8_0 keeps it.
		p.res.MergeFallback = fmt.Sprintf("merged at the base's own type (%s), the model did not answer as the tuned model: merged at q8_0 instead", ft)
		o.Logger.Warn("the merged model at the base's own type does not answer as the tuned model (requantized to "+ft.String()+", the adapter's change rounds away): merging at q8_0 instead", args...)
		mergeType = "q8_0"
	}
}

// below8Bits says whether a file type stores its weights in fewer than 8
// bits (Q8_0 and the float types do not).
func below8Bits(ft llama.FileType) bool {
	switch ft {
	case llama.FileTypeF32, llama.FileTypeF16, llama.FileTypeBF16, llama.FileTypeQ8_0:
		return false
	}
	return true
}

// mergeCheck loads the merged model and compares its greedy answer to cs
// with the tuned model's in-process.
func (p *publisher) mergeCheck(ctx context.Context, path string, local *evals.Local, cs evals.Case) (*MergeCheck, error) {
	o := p.o
	m, err := evals.NewLocal("merged", evals.LocalOptions{
		Model: path, Settings: evals.Settings{MaxTokens: o.MaxTokens, Seed: 42}, Sequences: 1, Threads: o.Threads,
		Template: localTemplate(o.Template.Train),
	})
	if err != nil {
		return nil, fmt.Errorf("the merged model does not load in llama.cpp: %s; nothing was uploaded", strings.TrimPrefix(err.Error(), "contestant merged: "))
	}
	defer m.Close()
	return CompareAnswers(ctx, m, local, cs)
}

// CompareAnswers gives merged's and local's greedy answers to cs and,
// where they differ, where they part and the log-probabilities of both
// picks there in both models.
func CompareAnswers(ctx context.Context, merged, local *evals.Local, cs evals.Case) (*MergeCheck, error) {
	ma, err := merged.Answer(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("the merged model in-process: %w", err)
	}
	la, err := local.Answer(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("the tuned model in-process: %w", err)
	}
	c := &MergeCheck{Merged: ma.Text, Local: la.Text, Identical: ma.Text == la.Text}
	for c.Agree < len(c.Merged) && c.Agree < len(c.Local) && c.Merged[c.Agree] == c.Local[c.Agree] {
		c.Agree++
	}
	if !c.Identical {
		if c.Part, err = divergence(ctx, merged, local, cs, ma.Tokens, la.Tokens); err != nil {
			return nil, fmt.Errorf("the log-probabilities where the answers part: %w", err)
		}
	}
	return c, nil
}

// divergence finds the first token where the greedy answers mt (merged)
// and lt (base with adapter) differ and scores both picks in both models.
// It returns nil when neither answer has a token there (both stopped).
func divergence(ctx context.Context, merged, local *evals.Local, cs evals.Case, mt, lt []int32) (*Divergence, error) {
	k := 0
	for k < len(mt) && k < len(lt) && mt[k] == lt[k] {
		k++
	}
	if k == len(mt) && k == len(lt) {
		return nil, nil
	}
	lpM, err := merged.LogProbs(ctx, cs, mt[:k])
	if err != nil {
		return nil, err
	}
	lpL, err := local.LogProbs(ctx, cs, lt[:k])
	if err != nil {
		return nil, err
	}
	d := &Divergence{AfterTokens: k}
	// An answer that ended there is scored as its model's top choice, which
	// the other side's pick fell short of.
	pick := func(ts []int32, lp []float64) int {
		if k < len(ts) {
			return int(ts[k])
		}
		best := 0
		for i, v := range lp {
			if v > lp[best] {
				best = i
			}
		}
		return best
	}
	tm, tl := pick(mt, lpM), pick(lt, lpL)
	if k < len(mt) {
		d.Merged = merged.Piece(int32(tm))
	}
	if k < len(lt) {
		d.Local = local.Piece(int32(tl))
	}
	d.MergedPickInMerged, d.MergedPickInLocal = lpM[tm], lpL[tm]
	d.LocalPickInMerged, d.LocalPickInLocal = lpM[tl], lpL[tl]
	return d, nil
}

// keepMerged moves the published merged model to o.Merged.
func (p *publisher) keepMerged(path string) error {
	if p.o.Merged == "" {
		return nil
	}
	if err := os.Rename(path, p.o.Merged); err != nil {
		return fmt.Errorf("keeping the merged model as %s failed: %w", p.o.Merged, err)
	}
	return nil
}

func typeOr(t, def string) string {
	if t == "" {
		return def
	}
	return t
}

// writeModelfile writes the Modelfile into ModelfileDir, if one is given.
func (p *publisher) writeModelfile(t OllamaTemplate) error {
	if p.o.ModelfileDir == "" {
		return nil
	}
	path := filepath.Join(p.o.ModelfileDir, ModelfileName)
	if err := atomicfile.Write(path, []byte(p.modelfile(t))); err != nil {
		return fmt.Errorf("writing %s failed: %w", path, err)
	}
	p.res.Modelfile = path
	return nil
}

// localTemplate is the template Local renders a case without tokens with.
func localTemplate(train string) string {
	if train == "none" {
		return ""
	}
	return train
}

// smoke asks the new model one question and the tuned model in-process the
// same, greedily.
func (p *publisher) smoke(ctx context.Context, model string, local *evals.Local, cs evals.Case) error {
	opts := map[string]any{"repeat_penalty": 1.0}
	for k, v := range p.o.Options {
		opts[k] = v
	}
	served, err := evals.NewOllama("served", evals.OllamaOptions{
		Host: p.host, Model: model, Settings: evals.Settings{MaxTokens: p.o.MaxTokens, Seed: 42}, Options: opts,
		Retry: evals.Retry{Attempts: 1, Timeout: 10 * time.Minute}, HTTPClient: p.http,
	})
	if err != nil {
		return err
	}
	p.o.Logger.Info("asking the new model", "prompt", textfmt.Shorten(cs.Prompt[len(cs.Prompt)-1].Content, 60))
	sa, err := served.Answer(ctx, cs)
	if err != nil {
		return p.runnerError(err)
	}
	la, err := local.Answer(ctx, cs)
	if err != nil {
		return fmt.Errorf("the tuned model in-process: %w", err)
	}
	s := &p.res.Smoke
	s.Prompt = cs.Prompt[len(cs.Prompt)-1].Content
	s.Served, s.Local, s.ServedMS = sa.Text, la.Text, float64(sa.Latency.Microseconds())/1000
	// Bytes that are not UTF-8 (a byte-level token cut off) are dropped by
	// Ollama's runner and kept by the in-process decoder.
	st, lt := strings.ToValidUTF8(sa.Text, ""), strings.ToValidUTF8(la.Text, "")
	s.Identical = st == lt
	for s.Agree < len(st) && s.Agree < len(lt) && st[s.Agree] == lt[s.Agree] {
		s.Agree++
	}
	s.Prefix = !s.Identical && st != "" && strings.HasPrefix(lt, st)
	return nil
}

// checkOllamaBase makes sure the Ollama model is the base the adapter was
// trained on, by the digest of its weights.
func (p *publisher) checkOllamaBase(show *api.ShowResponse, want string) error {
	_, hex, ok := strings.Cut(filepath.Base(ollamahost.FromPath(show.Modelfile)), "sha256-")
	digest := "sha256:" + hex
	if !ok {
		return fmt.Errorf("the Ollama model %s does not say which weights it has; publish with --base FILE to upload the base GGUF", p.o.FromOllama)
	}
	if digest != want {
		return fmt.Errorf("base mismatch: the Ollama model %s has weights %s but the adapter was trained on %s (%s): `ollama pull` the version trained on, or publish with --base FILE to upload that base; nothing was uploaded",
			p.o.FromOllama, short(digest), short(want), p.o.Base)
	}
	return nil
}

// blob uploads a file of the given digest and size unless the server has
// it, and checks that the server has it after.
func (p *publisher) blob(ctx context.Context, what, path, d string, size int64) (string, error) {
	has, err := p.hasBlob(ctx, d)
	if err != nil {
		return "", p.serverError("check blobs on", err)
	}
	if has {
		p.o.Logger.Info(what+" already on the server", "digest", short(d))
		p.res.Present = append(p.res.Present, d)
		return d, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	p.o.Logger.Info("uploading "+what, "file", path, "size", textfmt.HumanFileSize(size))
	start := time.Now()
	if err := p.client.CreateBlob(ctx, d, &progressReader{r: f, size: size, what: what, log: p.o.Logger, last: start}); err != nil {
		return "", p.serverError("upload "+path+" to", err)
	}
	if has, err := p.hasBlob(ctx, d); err != nil || !has {
		return "", fmt.Errorf("the Ollama server at %s accepted %s but does not have blob %s after: check its log and disk space", p.host, path, short(d))
	}
	p.o.Logger.Info("uploaded "+what, "digest", short(d), "took", time.Since(start).Round(time.Millisecond))
	p.res.Uploaded = append(p.res.Uploaded, d)
	return d, nil
}

// hasBlob asks the server whether it has a blob (HEAD /api/blobs/DIGEST).
func (p *publisher) hasBlob(ctx context.Context, digest string) (bool, error) {
	u, _ := url.Parse(p.host)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.JoinPath("api", "blobs", digest).String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD /api/blobs: %s", resp.Status)
}

// modelfile is the Modelfile that creates the published model by hand:
// `ollama create NAME -f Modelfile` in the run folder.
func (p *publisher) modelfile(t OllamaTemplate) string {
	if p.res.As == AsMerged {
		from := p.o.Merged
		if rel, err := filepath.Rel(p.o.ModelfileDir, from); err == nil && !strings.HasPrefix(rel, "..") {
			from = "./" + filepath.ToSlash(rel)
		}
		mf := parser.Modelfile{Commands: []parser.Command{{Name: "model", Args: from}, {Name: "template", Args: t.Text}}}
		for _, s := range t.Stop {
			mf.Commands = append(mf.Commands, parser.Command{Name: "stop", Args: s})
		}
		return fmt.Sprintf("# %s: the base with the LoRA adapter merged in (%s), as `finetune publish` created it.\n# Recreate it with: ollama create %s -f %s\n", p.o.Name, p.res.MergedType, p.o.Name, ModelfileName) + mf.String()
	}
	from := p.o.FromOllama
	if from == "" {
		from, _ = filepath.Abs(p.o.Base)
	}
	adapter := p.o.Adapter
	if rel, err := filepath.Rel(p.o.ModelfileDir, p.o.Adapter); err == nil && !strings.HasPrefix(rel, "..") {
		adapter = "./" + filepath.ToSlash(rel)
	} else {
		adapter, _ = filepath.Abs(adapter)
	}
	mf := parser.Modelfile{Commands: []parser.Command{{Name: "model", Args: from}, {Name: "adapter", Args: adapter}, {Name: "template", Args: t.Text}}}
	for _, s := range t.Stop {
		mf.Commands = append(mf.Commands, parser.Command{Name: "stop", Args: s})
	}
	return fmt.Sprintf("# %s: the base with the LoRA adapter, as `finetune publish` created it.\n# Recreate it with: ollama create %s -f %s\n", p.o.Name, p.o.Name, ModelfileName) + mf.String()
}

// stopsOf reads the stop parameters out of /api/show's parameter lines.
func stopsOf(params string) []string {
	var out []string
	for _, line := range strings.Split(params, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "stop" {
			v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "stop"))
			out = append(out, strings.Trim(v, `"`))
		}
	}
	return out
}

// serverError says in one line what went wrong talking to the server and
// what to do.
func (p *publisher) serverError(doing string, err error) error {
	msg := err.Error()
	var se api.StatusError
	if errors.As(err, &se) && se.ErrorMessage != "" {
		msg = se.ErrorMessage
	}
	var ne net.Error
	var oe *net.OpError
	switch {
	case strings.Contains(msg, "no space left on device"):
		return fmt.Errorf("the Ollama server at %s is out of disk space (%s): free space where it keeps models (OLLAMA_MODELS on the server) and publish again; nothing in the run folder changed", p.host, textfmt.OneLine(msg))
	case errors.As(err, &oe) || errors.As(err, &ne) || strings.Contains(msg, "connection refused"):
		return fmt.Errorf("cannot %s the Ollama server at %s (%s): start it with `ollama serve`, or give --host", doing, p.host, textfmt.OneLine(msg))
	}
	return fmt.Errorf("could not %s the Ollama server at %s: %s", doing, p.host, textfmt.OneLine(msg))
}

// runnerError explains a failed first request to the new model.
func (p *publisher) runnerError(err error) error {
	msg := textfmt.OneLine(err.Error())
	if strings.HasPrefix(msg, "gave up after ") {
		_, msg, _ = strings.Cut(msg, ": ")
	}
	switch {
	case strings.Contains(msg, "loras are not yet implemented"), strings.Contains(msg, "lora") && strings.Contains(msg, "not"):
		return fmt.Errorf("the Ollama server at %s cannot apply LoRA adapters to this model: it runs it on its newer engine (OLLAMA_NEW_ENGINE is set, or the architecture requires it), which has no adapter support (%s); unset OLLAMA_NEW_ENGINE on the server, or publish a merged model with --as merged", p.host, msg)
	case strings.Contains(msg, "no space left on device"):
		return p.serverError("run the model on", err)
	}
	return fmt.Errorf("the Ollama server at %s created the model but it failed to answer (%s): the server's log says why; nothing was kept", p.host, msg)
}

// blobDigest is a file's digest as Ollama names blobs, and its size.
func blobDigest(path string) (string, int64, error) {
	d, n, err := filehash.SHA256(path)
	return "sha256:" + d, n, err
}

// progressReader logs an upload's progress every few seconds.
type progressReader struct {
	r          io.Reader
	size, done int64
	what       string
	log        *slog.Logger
	last       time.Time
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.done += int64(n)
	if time.Since(r.last) > 5*time.Second {
		r.last = time.Now()
		r.log.Info("uploading "+r.what, "done", fmt.Sprintf("%s of %s", textfmt.HumanFileSize(r.done), textfmt.HumanFileSize(r.size)))
	}
	return n, err
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}
