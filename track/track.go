// Package track sends a run's figures to experiment trackers: TensorBoard
// event files in the run folder, and an MLflow tracking server. runs and
// sweeps feed it the metrics the trainer reports and the eval's scores;
// the trainer itself knows nothing of it.
//
// A tracker never fails or holds up the run it tracks: what is sent to
// MLflow goes from a queue in the background; a server that is down or
// slow is reported once, in one line, and sent to again until it answers;
// what is still unsent when the tracker closes is listed in the folder
// (PendingFile) and sent first by the next tracker of that folder.
package track

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/finetune-dev/finetune/internal/atomicfile"
)

const (
	// MLflowFile names the MLflow run a folder's figures go to (Record),
	// so a resumed run, its eval and a sweep's trials find it. Written
	// when the server makes the run.
	MLflowFile = "mlflow.json"
	// PendingFile lists what could not be sent to MLflow before the
	// tracker closed, one operation per line; the next tracker of the
	// folder sends it first. Removed once everything is sent.
	PendingFile = "mlflow-pending.jsonl"
)

// Config says where a folder's figures go.
type Config struct {
	// Dir is the run folder (or a sweep's): event files, MLflowFile and
	// PendingFile go there.
	Dir string
	// TensorBoard writes event files into Dir.
	TensorBoard bool
	// MLflow is the tracking server's address; "" sends nothing to
	// MLflow.
	MLflow     string
	Experiment string
	RunName    string
	// ParentRunID makes the MLflow run a child of that run (a sweep's).
	ParentRunID string
	// Tags are set on the MLflow run when it is made; Params are logged
	// then (a run's parameters never change).
	Tags   map[string]string
	Params map[string]string
	// Running marks an existing MLflow run as running again (a resumed
	// training run); else its status is left as it is.
	Running bool
	Logger  *slog.Logger
	// Timeout bounds one request (default 10 s); Linger is how long
	// Close waits for the queue to empty (default 15 s); Retry the
	// longest wait between two tries at a server that does not answer
	// (default 10 s).
	Timeout, Linger, Retry time.Duration
}

// Record is MLflowFile.
type Record struct {
	TrackingURI  string `json:"tracking_uri"`
	ExperimentID string `json:"experiment_id"`
	RunID        string `json:"run_id"`
	ParentRunID  string `json:"parent_run_id,omitempty"`
	ArtifactURI  string `json:"artifact_uri"`
}

// ReadRecord reads dir's MLflowFile; nil when there is none.
func ReadRecord(dir string) *Record {
	b, err := os.ReadFile(filepath.Join(dir, MLflowFile))
	if err != nil {
		return nil
	}
	var r Record
	if json.Unmarshal(b, &r) != nil || r.RunID == "" {
		return nil
	}
	return &r
}

// Tracker tracks one folder. Its methods are safe for one goroutine (the
// run's) and never block on the network.
type Tracker struct {
	log *slog.Logger
	tb  *EventFile
	ml  *sender
}

// Open starts tracking cfg.Dir. It fails only on a Config that cannot
// work (an MLflow address that is not one); an event file that cannot
// be made or a server that does not answer is logged and the run goes on.
func Open(cfg Config) (*Tracker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{log: log}
	if cfg.MLflow != "" {
		if err := CheckURI(cfg.MLflow); err != nil {
			return nil, err
		}
	}
	if cfg.TensorBoard {
		tb, err := NewEventFile(cfg.Dir)
		if err != nil {
			log.Warn("tensorboard: cannot write an event file; the run goes on without it", "err", err)
		} else {
			t.tb = tb
		}
	}
	if cfg.MLflow != "" {
		t.ml = newSender(cfg, log)
	}
	return t, nil
}

// MLflowRunID is the MLflow run the tracker sends to ("" while the
// server has not made it, or without MLflow).
func (t *Tracker) MLflowRunID() string {
	if t == nil || t.ml == nil {
		return ""
	}
	t.ml.mu.Lock()
	defer t.ml.mu.Unlock()
	return t.ml.rec.RunID
}

// Scalars records values at step: a TensorBoard scalar and an MLflow
// metric each. Values that are not finite are left out.
func (t *Tracker) Scalars(step int, values map[string]float64) {
	if t == nil {
		return
	}
	now := time.Now()
	finite := make(map[string]float64, len(values))
	for k, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			finite[k] = v
		}
	}
	values = finite
	if t.tb != nil {
		if err := t.tb.Scalars(step, now, values); err != nil {
			t.log.Warn("tensorboard: cannot write the event file; the run goes on without it", "file", t.tb.Path, "err", err)
			t.tb.Close()
			t.tb = nil
		}
	}
	if t.ml != nil {
		ms := make([]Metric, 0, len(values))
		for _, k := range sortedKeys(values) {
			ms = append(ms, Metric{Key: k, Value: values[k], Timestamp: now.UnixMilli(), Step: int64(step)})
		}
		t.ml.push(op{Kind: "metrics", Metrics: ms})
	}
}

// Text records a Markdown text at step: a TensorBoard text summary, and
// an MLflow tag (its runs page shows tags).
func (t *Tracker) Text(step int, tag, text string) {
	if t == nil {
		return
	}
	if t.tb != nil {
		if err := t.tb.Text(step, time.Now(), tag, text); err != nil {
			t.log.Warn("tensorboard: cannot write the event file", "file", t.tb.Path, "err", err)
		}
	}
	if t.ml != nil {
		t.ml.push(op{Kind: "tags", Tags: []Tag{{Key: tag, Value: truncate(text, 5000)}}})
	}
}

// Artifact sends the file at path as the MLflow artifact name; the file
// is read when it is sent.
func (t *Tracker) Artifact(path, name string) {
	if t == nil || t.ml == nil {
		return
	}
	t.ml.push(op{Kind: "artifact", Path: path, Name: name})
}

// End sets the MLflow run's status: FINISHED, FAILED or KILLED.
func (t *Tracker) End(status string) {
	if t == nil || t.ml == nil {
		return
	}
	t.ml.push(op{Kind: "status", Status: status})
}

// Close closes the event file and waits, up to Config.Linger, for the
// MLflow queue to empty; what is left is written to PendingFile.
func (t *Tracker) Close() error {
	if t == nil {
		return nil
	}
	var err error
	if t.tb != nil {
		err = t.tb.Close()
		t.tb = nil
	}
	if t.ml != nil {
		err = errors.Join(err, t.ml.close())
		t.ml = nil
	}
	return err
}

// op is one thing to send, as PendingFile lists it.
type op struct {
	Kind    string   `json:"kind"` // create, metrics, params, tags, artifact, status
	Metrics []Metric `json:"metrics,omitempty"`
	Params  []Tag    `json:"params,omitempty"`
	Tags    []Tag    `json:"tags,omitempty"`
	Path    string   `json:"path,omitempty"` // artifact: the file
	Name    string   `json:"name,omitempty"` // artifact: its name in the run
	Status  string   `json:"status,omitempty"`
}

type sender struct {
	cfg    Config
	client *Client
	log    *slog.Logger

	mu      sync.Mutex
	rec     Record
	queue   []op
	params  []op // the new run's parameters, sent before anything else
	closing bool
	stopped bool // close gave up waiting: the loop leaves the queue alone
	failing bool // the last try did not reach the server
	warned  bool
	wake    chan struct{}
	done    chan struct{}
}

func newSender(cfg Config, log *slog.Logger) *sender {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Linger == 0 {
		cfg.Linger = 15 * time.Second
	}
	if cfg.Retry == 0 {
		cfg.Retry = 10 * time.Second
	}
	s := &sender{cfg: cfg, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}),
		client: &Client{URI: cfg.MLflow, HTTP: &http.Client{Timeout: cfg.Timeout}}}
	if r := ReadRecord(cfg.Dir); r != nil && r.TrackingURI == cfg.MLflow {
		s.rec = *r
		if cfg.Running {
			s.queue = append(s.queue, op{Kind: "status", Status: "RUNNING"})
		}
	} else {
		// The run shows in MLflow from the start, before any figure.
		s.queue = append(s.queue, op{Kind: "create"})
	}
	// What an earlier tracker of the folder could not send goes first.
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, PendingFile)); err == nil {
		var old []op
		for line := range strings.Lines(string(b)) {
			var o op
			if json.Unmarshal([]byte(line), &o) == nil {
				old = append(old, o)
			}
		}
		s.queue = append(old, s.queue...)
	}
	go s.loop()
	return s
}

func (s *sender) push(o op) {
	s.mu.Lock()
	s.queue = append(s.queue, o)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next is the batch to send next: the first op, with the metrics ops
// right after it when it is one (up to the server's 1000 a request).
func (s *sender) next() (op, int) {
	first := s.queue[0]
	if first.Kind != "metrics" {
		return first, 1
	}
	b := op{Kind: "metrics", Metrics: slices.Clone(first.Metrics)}
	n := 1
	for n < len(s.queue) && s.queue[n].Kind == "metrics" && len(b.Metrics)+len(s.queue[n].Metrics) <= 1000 {
		b.Metrics = append(b.Metrics, s.queue[n].Metrics...)
		n++
	}
	return b, n
}

func (s *sender) loop() {
	defer close(s.done)
	wait := time.Second
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return
			}
			<-s.wake
			continue
		}
		o, n := s.next()
		s.mu.Unlock()

		err := s.send(o)
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		if err != nil && Retry(err) {
			if !s.warned {
				s.warned = true
				s.log.Warn(fmt.Sprintf("mlflow: %s does not answer (%v); training goes on, and what it misses is sent when it answers", s.cfg.MLflow, shortErr(err)))
			}
			s.failing = true
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-time.After(wait):
			}
			wait = min(2*wait, s.cfg.Retry)
			continue
		}
		if err != nil {
			s.log.Warn("mlflow: the server refused what was sent; it is left out", "what", o.Kind, "err", err)
		}
		if s.failing {
			s.failing = false
			s.log.Info("mlflow: the server answers again", "uri", s.cfg.MLflow)
		}
		wait = time.Second
		s.queue = s.queue[n:]
		s.mu.Unlock()
	}
}

// send sends one op, making the MLflow run first when there is none yet.
func (s *sender) send(o op) error {
	ctx := context.Background()
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	if rec.RunID == "" {
		var err error
		if rec, err = s.create(ctx); err != nil {
			return err
		}
	}
	for {
		s.mu.Lock()
		if len(s.params) == 0 {
			s.mu.Unlock()
			break
		}
		p := s.params[0]
		s.mu.Unlock()
		if err := s.client.LogBatch(ctx, rec.RunID, nil, p.Params, nil); err != nil && Retry(err) {
			return err
		} else if err != nil {
			s.log.Warn("mlflow: the server refused the run's parameters; they are left out", "err", err)
		}
		s.mu.Lock()
		s.params = s.params[1:]
		s.mu.Unlock()
	}
	switch o.Kind {
	case "metrics":
		return s.client.LogBatch(ctx, rec.RunID, o.Metrics, nil, nil)
	case "params":
		return s.client.LogBatch(ctx, rec.RunID, nil, o.Params, nil)
	case "tags":
		return s.client.LogBatch(ctx, rec.RunID, nil, nil, o.Tags)
	case "status":
		return s.client.UpdateRun(ctx, rec.RunID, o.Status)
	case "artifact":
		err := s.client.UploadArtifact(ctx, rec.ArtifactURI, o.Name, o.Path)
		if errors.Is(err, os.ErrNotExist) {
			return &APIError{Status: 400, Message: err.Error()} // gone: nothing to retry
		}
		return err
	}
	return nil
}

// create makes the MLflow run, records it in MLflowFile and holds its
// parameters to send first.
func (s *sender) create(ctx context.Context) (Record, error) {
	exp, err := s.client.Experiment(ctx, s.cfg.Experiment)
	if err != nil {
		return Record{}, err
	}
	tags := []Tag{{"mlflow.source.name", "finetune"}, {"mlflow.source.type", "LOCAL"}, {"finetune.dir", s.cfg.Dir}}
	if s.cfg.ParentRunID != "" {
		tags = append(tags, Tag{"mlflow.parentRunId", s.cfg.ParentRunID})
	}
	for _, k := range sortedKeys(s.cfg.Tags) {
		tags = append(tags, Tag{k, s.cfg.Tags[k]})
	}
	info, err := s.client.CreateRun(ctx, exp, s.cfg.RunName, tags)
	if err != nil {
		return Record{}, err
	}
	rec := Record{TrackingURI: s.cfg.MLflow, ExperimentID: exp, RunID: info.RunID, ParentRunID: s.cfg.ParentRunID, ArtifactURI: info.ArtifactURI}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := atomicfile.Write(filepath.Join(s.cfg.Dir, MLflowFile), append(b, '\n')); err != nil {
		s.log.Warn("mlflow: cannot record the run id; a resume will start another MLflow run", "err", err)
	}
	var params []op
	keys := sortedKeys(s.cfg.Params)
	for len(keys) > 0 {
		n := min(len(keys), 100)
		var ps []Tag
		for _, k := range keys[:n] {
			ps = append(ps, Tag{truncate(k, 250), truncate(s.cfg.Params[k], 6000)})
		}
		params = append(params, op{Kind: "params", Params: ps})
		keys = keys[n:]
	}
	s.mu.Lock()
	s.rec = rec
	s.params = params
	s.mu.Unlock()
	s.log.Info("mlflow: tracking the run", "uri", s.cfg.MLflow, "experiment", s.cfg.Experiment, "run_id", rec.RunID)
	return rec, nil
}

// close waits up to Linger for the queue to empty, then lists what is
// left in PendingFile (or removes it when nothing is).
func (s *sender) close() error {
	s.mu.Lock()
	s.closing = true
	failing := s.failing
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	linger := s.cfg.Linger
	if failing {
		linger = min(linger, 3*time.Second) // one more try at a server that was down
	}
	select {
	case <-s.done:
	case <-time.After(linger):
	}
	s.mu.Lock()
	left := append(slices.Clone(s.params), s.queue...)
	s.stopped = true // the loop, still waiting on a request, stops after it
	s.mu.Unlock()
	path := filepath.Join(s.cfg.Dir, PendingFile)
	if len(left) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	var b []byte
	metrics := 0
	for _, o := range left {
		line, _ := json.Marshal(o)
		b = append(append(b, line...), '\n')
		metrics += len(o.Metrics)
	}
	s.log.Warn(fmt.Sprintf("mlflow: %s did not take %d items (%d metric values); they are listed in %s and sent when this folder is tracked again (resume, eval)", s.cfg.MLflow, len(left), metrics, path))
	return atomicfile.Write(path, b)
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 120 {
		s = s[i+2:]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
