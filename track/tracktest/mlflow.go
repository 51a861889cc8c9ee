package tracktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-dev/finetune/internal/pyref"
)

// MLflowInstallHint is what a test without an MLflow server says to do.
const MLflowInstallHint = "install it with scripts/install-mlflow.sh (or set FINETUNE_MLFLOW to an mlflow command)"

// MLflowCommand is the mlflow command of scripts/install-mlflow.sh
// ($FINETUNE_MLFLOW, else $FINETUNE_MLFLOW_VENV/bin/mlflow, else
// ~/.cache/finetune/mlflow/bin/mlflow), or an error saying why there is
// none.
func MLflowCommand() (string, error) {
	if p := os.Getenv("FINETUNE_MLFLOW"); p != "" {
		return p, nil
	}
	venv, err := pyref.Venv("FINETUNE_MLFLOW_VENV", "mlflow")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(venv, ".pins")); err != nil {
		return "", fmt.Errorf("no MLflow installed at %s", venv)
	}
	return filepath.Join(venv, "bin", "mlflow"), nil
}

// MLflow is a real MLflow tracking server (mlflow server: SQLite backend,
// artifacts served by the server, on loopback) for one test.
type MLflow struct {
	URI  string
	tb   testing.TB
	cmd  string
	dir  string
	port int
	proc *exec.Cmd
	log  *os.File
}

// StartMLflow starts a tracking server, stopped when the test ends;
// the test skips loudly where none is installed.
func StartMLflow(tb testing.TB) *MLflow {
	tb.Helper()
	cmd, err := MLflowCommand()
	if err != nil {
		tb.Skipf("SKIPPED: no MLflow tracking server: %v; %s", err, MLflowInstallHint)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	m := &MLflow{tb: tb, cmd: cmd, dir: tb.TempDir(), port: port, URI: fmt.Sprintf("http://127.0.0.1:%d", port)}
	tb.Cleanup(m.Stop)
	m.Start()
	return m
}

// Start starts the server (again, after Stop: same port, same database
// and artifacts) and waits until it answers.
func (m *MLflow) Start() {
	m.tb.Helper()
	if m.proc != nil {
		return
	}
	log, err := os.OpenFile(filepath.Join(m.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.tb.Fatal(err)
	}
	c := exec.Command(m.cmd, "server", "--host", "127.0.0.1", "--port", fmt.Sprint(m.port), "--workers", "1",
		"--backend-store-uri", "sqlite:///"+filepath.Join(m.dir, "mlflow.db"),
		"--artifacts-destination", filepath.Join(m.dir, "artifacts"))
	c.Dir = m.dir
	// No job runner (seven more Python processes this test does not use).
	c.Env = append(os.Environ(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false")
	c.Stdout, c.Stderr = log, log
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		log.Close()
		m.tb.Fatalf("%s server: %v", m.cmd, err)
	}
	m.proc, m.log = c, log
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if resp, err := http.Get(m.URI + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				go func() { <-exited }()
				return
			}
		}
		select {
		case err := <-exited:
			m.proc = nil
			b, _ := os.ReadFile(filepath.Join(m.dir, "server.log"))
			m.tb.Fatalf("mlflow server exited: %v\n%s", err, tail(string(b), 3000))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(m.dir, "server.log"))
			m.tb.Fatalf("mlflow server did not answer at %s within 3 minutes:\n%s", m.URI, tail(string(b), 3000))
		}
	}
}

// Stop stops the server (its process group) and waits until the port no
// longer answers.
func (m *MLflow) Stop() {
	if m.proc == nil {
		return
	}
	pgid := m.proc.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(-pgid, 0) != nil {
			break
		}
		if i == 50 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.proc = nil
	m.log.Close()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// call asks MLflow's REST API, failing the test on an error.
func (m *MLflow) call(method, path string, in, out any) {
	m.tb.Helper()
	var body *bytes.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, m.URI+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		m.tb.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, buf.String())
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		m.tb.Fatalf("%s %s: %v", method, path, err)
	}
}

// Run is a run as MLflow's REST API returns it (runs/get).
type Run struct {
	Info struct {
		RunID        string `json:"run_id"`
		RunName      string `json:"run_name"`
		ExperimentID string `json:"experiment_id"`
		Status       string `json:"status"`
	} `json:"info"`
	Data struct {
		Params []struct{ Key, Value string } `json:"params"`
		Tags   []struct{ Key, Value string } `json:"tags"`
	} `json:"data"`
}

// Param is the run's parameter key ("" when it has none).
func (r *Run) Param(key string) string {
	for _, p := range r.Data.Params {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// Tag is the run's tag key ("" when it has none).
func (r *Run) Tag(key string) string {
	for _, p := range r.Data.Tags {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// GetRun returns a run by id.
func (m *MLflow) GetRun(id string) *Run {
	m.tb.Helper()
	var out struct{ Run Run }
	m.call("GET", "/api/2.0/mlflow/runs/get?run_id="+url.QueryEscape(id), nil, &out)
	return &out.Run
}

// Runs returns every run of the experiment called name.
func (m *MLflow) Runs(experiment string) []Run {
	m.tb.Helper()
	var exp struct {
		Experiment struct {
			ID string `json:"experiment_id"`
		} `json:"experiment"`
	}
	m.call("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name="+url.QueryEscape(experiment), nil, &exp)
	var out struct {
		Runs []Run `json:"runs"`
	}
	m.call("POST", "/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{exp.Experiment.ID}, "max_results": 1000}, &out)
	return out.Runs
}

// Point is one value of a metric's history.
type Point struct {
	Step  int64   `json:"step"`
	Value float64 `json:"value"`
}

// History returns every value of a run's metric.
func (m *MLflow) History(runID, key string) []Point {
	m.tb.Helper()
	var out struct {
		Metrics []Point `json:"metrics"`
	}
	m.call("GET", "/api/2.0/mlflow/metrics/get-history?max_results=25000&run_id="+url.QueryEscape(runID)+"&metric_key="+url.QueryEscape(key), nil, &out)
	return out.Metrics
}

// Artifacts lists a run's artifact files under path ("" for the top),
// their paths relative to the run's artifact root, recursively.
func (m *MLflow) Artifacts(runID, path string) []string {
	m.tb.Helper()
	var out struct {
		Files []struct {
			Path  string `json:"path"`
			IsDir bool   `json:"is_dir"`
		} `json:"files"`
	}
	m.call("GET", "/api/2.0/mlflow/artifacts/list?run_id="+url.QueryEscape(runID)+"&path="+url.QueryEscape(path), nil, &out)
	var files []string
	for _, f := range out.Files {
		if f.IsDir {
			files = append(files, m.Artifacts(runID, f.Path)...)
		} else {
			files = append(files, f.Path)
		}
	}
	return files
}

// Artifact returns the content of a run's artifact.
func (m *MLflow) Artifact(runID, path string) ([]byte, error) {
	resp, err := http.Get(m.URI + "/get-artifact?run_id=" + url.QueryEscape(runID) + "&path=" + url.QueryEscape(path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return nil, errors.New(strings.TrimSpace(buf.String()))
	}
	return buf.Bytes(), nil
}
