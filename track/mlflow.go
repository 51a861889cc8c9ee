package track

// MLflow's REST API (https://mlflow.org/docs/latest/rest-api.html), the
// few endpoints a run needs: experiments, runs, batched metrics and
// parameters, and artifact upload through the tracking server's artifact
// proxy (mlflow server's default, --serve-artifacts).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client talks to one MLflow tracking server.
type Client struct {
	// URI is the server's address, http:// or https://, without
	// credentials: those come from the environment at every request
	// (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
	// MLFLOW_TRACKING_PASSWORD), and are never written anywhere.
	URI  string
	HTTP *http.Client
}

// CheckURI says whether uri can be a tracking server's address.
func CheckURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http:// or https:// address of an MLflow tracking server", uri)
	}
	if u.User != nil {
		return fmt.Errorf("%s holds credentials: give them as MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("%q names no host", uri)
	}
	return nil
}

// APIError is an answer of the server other than 200.
type APIError struct {
	Status  int
	Code    string // MLflow's error_code, like RESOURCE_DOES_NOT_EXIST
	Message string
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("MLflow answered %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("MLflow answered %d: %s", e.Status, e.Message)
}

// Retry says whether sending again later may work: the server was not
// reached, or answered that it is overloaded or broken.
func Retry(err error) bool {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status == 429 || e.Status >= 500
	}
	return err != nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URI, "/")+path, body)
	if err != nil {
		return err
	}
	if body != nil && method != http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := os.Getenv("MLFLOW_TRACKING_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if u := os.Getenv("MLFLOW_TRACKING_USERNAME"); u != "" {
		req.SetBasicAuth(u, os.Getenv("MLFLOW_TRACKING_PASSWORD"))
	}
	h := c.HTTP
	if h == nil {
		h = http.DefaultClient
	}
	resp, err := h.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode}
		var m struct {
			Code    string `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &m) == nil && m.Code != "" {
			e.Code, e.Message = m.Code, m.Message
		} else {
			e.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("MLflow's answer to %s: %v", path, err)
		}
	}
	return nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/api/2.0/mlflow/"+path, bytes.NewReader(b), out)
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, http.MethodGet, "/api/2.0/mlflow/"+path+"?"+q.Encode(), nil, out)
}

// Experiment returns the id of the experiment called name, made when
// missing.
func (c *Client) Experiment(ctx context.Context, name string) (string, error) {
	var got struct {
		Experiment struct {
			ID string `json:"experiment_id"`
		} `json:"experiment"`
	}
	err := c.get(ctx, "experiments/get-by-name", url.Values{"experiment_name": {name}}, &got)
	if err == nil {
		return got.Experiment.ID, nil
	}
	var e *APIError
	if !errors.As(err, &e) || e.Code != "RESOURCE_DOES_NOT_EXIST" {
		return "", err
	}
	var made struct {
		ID string `json:"experiment_id"`
	}
	err = c.post(ctx, "experiments/create", map[string]string{"name": name}, &made)
	if errors.As(err, &e) && e.Code == "RESOURCE_ALREADY_EXISTS" {
		return c.Experiment(ctx, name) // made by another process meanwhile
	}
	return made.ID, err
}

// Tag is a run's tag or parameter.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Metric is one value of a metric at a step.
type Metric struct {
	Key       string  `json:"key"`
	Value     float64 `json:"value"`
	Timestamp int64   `json:"timestamp"` // milliseconds since 1970
	Step      int64   `json:"step"`
}

// RunInfo is what the server says of a run.
type RunInfo struct {
	RunID        string `json:"run_id"`
	ExperimentID string `json:"experiment_id"`
	Status       string `json:"status"`
	ArtifactURI  string `json:"artifact_uri"`
}

// CreateRun makes a run in the experiment.
func (c *Client) CreateRun(ctx context.Context, experimentID, name string, tags []Tag) (RunInfo, error) {
	var got struct {
		Run struct {
			Info RunInfo `json:"info"`
		} `json:"run"`
	}
	err := c.post(ctx, "runs/create", map[string]any{
		"experiment_id": experimentID, "run_name": name, "start_time": time.Now().UnixMilli(), "tags": tags,
	}, &got)
	return got.Run.Info, err
}

// UpdateRun sets a run's status (RUNNING, FINISHED, FAILED, KILLED); a
// finished status sets its end time too.
func (c *Client) UpdateRun(ctx context.Context, runID, status string) error {
	in := map[string]any{"run_id": runID, "status": status}
	if status != "RUNNING" {
		in["end_time"] = time.Now().UnixMilli()
	}
	return c.post(ctx, "runs/update", in, nil)
}

// LogBatch sends metrics, parameters and tags of a run in one request
// (the server takes up to 1000 metrics, 100 parameters and 100 tags).
func (c *Client) LogBatch(ctx context.Context, runID string, metrics []Metric, params, tags []Tag) error {
	in := map[string]any{"run_id": runID}
	if len(metrics) > 0 {
		in["metrics"] = metrics
	}
	if len(params) > 0 {
		in["params"] = params
	}
	if len(tags) > 0 {
		in["tags"] = tags
	}
	return c.post(ctx, "runs/log-batch", in, nil)
}

// UploadArtifact sends the file at local as the artifact name (a
// slash-separated path) of the run whose artifact URI is artifactURI.
// Only the server's artifact proxy (an mlflow-artifacts: URI) takes
// uploads over HTTP.
func (c *Client) UploadArtifact(ctx context.Context, artifactURI, name, local string) error {
	rest, ok := strings.CutPrefix(artifactURI, "mlflow-artifacts:")
	if !ok {
		return &APIError{Status: 400, Code: "ARTIFACT_STORE", Message: fmt.Sprintf("the server keeps this run's artifacts at %s, which it does not proxy: start it with --serve-artifacts", artifactURI)}
	}
	if after, ok := strings.CutPrefix(rest, "//"); ok { // mlflow-artifacts://host:port/path
		_, rest, _ = strings.Cut(after, "/")
	}
	b, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	p := strings.Trim(rest, "/") + "/" + strings.TrimLeft(name, "/")
	return c.do(ctx, http.MethodPut, "/api/2.0/mlflow-artifacts/artifacts/"+(&url.URL{Path: p}).EscapedPath(), bytes.NewReader(b), nil)
}
