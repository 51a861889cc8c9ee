package evals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Suite is what every contestant is asked and how answers are scored.
type Suite struct {
	Cases   []Case
	Metrics []Metric
	// Selection says how Cases were chosen, for the reports (nil: not
	// said).
	Selection *Selection
}

// Selection says how a suite's cases were chosen from a larger set.
type Selection struct {
	// Method is "all" (every case), "random" (a seeded random sample) or
	// "stratified" (a seeded random sample with each stratum's share
	// kept, every stratum represented when Chosen allows).
	Method string `json:"method"`
	Chosen int    `json:"chosen"`
	Of     int    `json:"of"` // cases to choose from
	Seed   uint64 `json:"seed,omitempty"`
	// By names what the strata are ("label"), and Strata how many there
	// were, for a stratified sample.
	By     string `json:"by,omitempty"`
	Strata int    `json:"strata,omitempty"`
}

// String is the selection in words, for reports.
func (s *Selection) String() string {
	switch s.Method {
	case "all":
		return fmt.Sprintf("all %d cases of the eval split", s.Of)
	case "random":
		return fmt.Sprintf("a random sample of %d of the eval split's %d cases (seed %d)", s.Chosen, s.Of, s.Seed)
	case "stratified":
		return fmt.Sprintf("a random sample of %d of the eval split's %d cases, stratified by %s (%d strata; seed %d)", s.Chosen, s.Of, s.By, s.Strata, s.Seed)
	}
	return fmt.Sprintf("%d of %d cases (%s)", s.Chosen, s.Of, s.Method)
}

// RunOptions tune a run.
type RunOptions struct {
	// Base names the contestant every other is compared with (default:
	// the first).
	Base string
	// CacheDir keeps every answer on disk ("" turns the cache off).
	CacheDir string
	// Progress, when not nil, is told of every answer (one call at a
	// time).
	Progress func(Progress)
	// Bootstrap is the number of bootstrap resamples (0: 2000).
	Bootstrap int
	// Seed of the bootstrap's resampling (results are reproducible).
	Seed uint64
	// MaxConsecutiveFailures: a contestant whose cases fail this many
	// times in a row, retries spent, is given up (0: 5).
	MaxConsecutiveFailures int
	// WaitReports is how often Progress hears of a contestant that is
	// waiting (starting, or with requests unanswered) while no case
	// finishes (0: 10s).
	WaitReports time.Duration
	// Logger is told of contestants given up and of answers the cache
	// could not keep (warnings), and of API requests retried (debug);
	// nil logs nothing.
	Logger *slog.Logger
}

// Progress reports one more answer (or judge verdict), or, with Wait set,
// what a contestant is waiting for while none arrives. A case not answered
// because ctx was cancelled is not reported: it is neither answered nor
// failed, and the next run asks it.
type Progress struct {
	Phase      string // "answer" or "judge"
	Contestant string
	Done       int // answered, failed or cached so far, of Total
	Total      int
	Cached     int
	Failed     int
	Err        error // the error of this case, if it failed (secrets removed)
	// NotAsked marks a case that failed without being asked: the
	// contestant had failed before (Err says why).
	NotAsked bool
	// Wait is set, and no case is done, in the reports sent while the
	// contestant waits.
	Wait *Wait
}

// Wait is what a contestant is waiting for.
type Wait struct {
	// Starting: the contestant is preparing (loading a model, asking the
	// server for it) and has been for For.
	Starting bool
	// Requests are the cases sent and not answered, the oldest for For;
	// Retrying of them wait to be sent again, the next in RetryIn, and
	// Resent have been sent again, after LastError.
	Requests  int
	Retrying  int
	RetryIn   time.Duration
	Resent    int
	For       time.Duration
	LastError string
}

// String is the wait in words: "starting for 20s", "3 requests waiting
// for an answer, the oldest for 25s; 1 to be sent again, the next in 2s,
// after: HTTP 500 …".
func (w *Wait) String() string {
	if w.Starting {
		return fmt.Sprintf("starting for %s", roundWait(w.For))
	}
	s := fmt.Sprintf("%d requests waiting for an answer, the oldest for %s", w.Requests, roundWait(w.For))
	if w.Requests == 1 {
		s = fmt.Sprintf("1 request waiting for an answer for %s", roundWait(w.For))
	}
	if w.Retrying > 0 {
		s += fmt.Sprintf("; %d to be sent again, the next in %s", w.Retrying, roundWait(w.RetryIn))
	}
	if w.Resent > 0 {
		s += fmt.Sprintf("; %d sent again", w.Resent)
	}
	if w.LastError != "" && w.Retrying+w.Resent > 0 {
		s += ", after: " + w.LastError
	}
	return s
}

func roundWait(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Results are everything a run found. results.json is this value.
type Results struct {
	Created     time.Time          `json:"created"`
	WallSeconds float64            `json:"wall_seconds"`
	Base        string             `json:"base"`
	Selection   *Selection         `json:"selection,omitempty"` // how the cases were chosen
	Metrics     []MetricInfo       `json:"metrics"`
	Contestants []ContestantResult `json:"contestants"`
	// Comparisons hold every pair of contestants on every column, each
	// contestant against the base first.
	Comparisons []Comparison  `json:"comparisons"`
	Judges      []JudgeResult `json:"judges,omitempty"`
	Cases       []CaseResult  `json:"cases"`
	Bootstrap   int           `json:"bootstrap_resamples"`
}

// MetricInfo describes a metric in results.
type MetricInfo struct {
	Name      string     `json:"name"`
	Kind      MetricKind `json:"kind"`
	Columns   []string   `json:"columns"`
	Normalize []string   `json:"normalize,omitempty"`
	Pattern   string     `json:"pattern,omitempty"`
	JSONField string     `json:"json_field,omitempty"`
	Judge     string     `json:"judge,omitempty"`
	Rubric    string     `json:"rubric,omitempty"`
	Against   string     `json:"against,omitempty"`
	// Max is the best possible score (1, or 5 for rubric grades).
	Max float64 `json:"max"`
}

// Score is a column's value for one contestant, with its bootstrap 95%
// confidence interval, over the N cases it has a score for, of the Asked
// the run asked; Incomplete when N < Asked (failed cases, missing judge
// verdicts).
type Score struct {
	Value      float64 `json:"value"`
	Low        float64 `json:"ci_low"`
	High       float64 `json:"ci_high"`
	N          int     `json:"n"`
	Asked      int     `json:"asked"`
	Incomplete bool    `json:"incomplete,omitempty"`
}

// Confusion is a label metric's confusion matrix: Counts[i][j] cases of
// reference label Labels[i] answered with Predicted[j] (the reference
// labels, then "(other)" for anything else, an unextracted label included).
type Confusion struct {
	Labels    []string `json:"labels"`
	Predicted []string `json:"predicted"`
	Counts    [][]int  `json:"counts"`
	// The answers counted as "(other)": NoLabel of them had no label to
	// extract; NotALabel named something that is none of Labels (the
	// label set is the eval cases' labels), NotALabelTop the most frequent
	// of those (up to 10, the most frequent first).
	NoLabel      int          `json:"no_label"`
	NotALabel    int          `json:"not_a_label"`
	NotALabelTop []LabelCount `json:"not_a_label_top,omitempty"`
}

// LabelCount is how many answers named a label.
type LabelCount struct {
	Label string `json:"label"`
	Count int    `json:"count"`
}

// NotALabelText is the answers whose label is none of the label set, in
// words: "not a label: 199 (verify_my_id 40, age_range 12, …)", or "" when
// there are none.
func (cm *Confusion) NotALabelText() string {
	if cm.NotALabel == 0 {
		return ""
	}
	var top []string
	for _, lc := range cm.NotALabelTop {
		top = append(top, fmt.Sprintf("%s %d", clipText(lc.Label, 60), lc.Count))
	}
	s := fmt.Sprintf("not a label: %d (%s", cm.NotALabel, strings.Join(top, ", "))
	if len(cm.NotALabelTop) > 0 && sumCounts(cm.NotALabelTop) < cm.NotALabel {
		s += ", …"
	}
	return s + ")"
}

func sumCounts(lcs []LabelCount) int {
	n := 0
	for _, lc := range lcs {
		n += lc.Count
	}
	return n
}

// Compact is the matrix as reports show it: without the labels no answer
// named (columns of zeros; "(other)" stays), or nil when no answer named
// a label at all, every case being "(other)": a column that says nothing
// a sentence would not.
func (cm *Confusion) Compact() *Confusion {
	var keep []int
	for j, p := range cm.Predicted {
		used := j == len(cm.Predicted)-1 && p == "(other)"
		for i := range cm.Counts {
			used = used || cm.Counts[i][j] > 0
		}
		if used {
			keep = append(keep, j)
		}
	}
	if len(keep) == 0 || len(keep) == 1 && cm.Predicted[keep[0]] == "(other)" {
		return nil
	}
	out := &Confusion{Labels: cm.Labels, Counts: make([][]int, len(cm.Counts)), NoLabel: cm.NoLabel, NotALabel: cm.NotALabel, NotALabelTop: cm.NotALabelTop}
	for _, j := range keep {
		out.Predicted = append(out.Predicted, cm.Predicted[j])
	}
	for i, row := range cm.Counts {
		for _, j := range keep {
			out.Counts[i] = append(out.Counts[i], row[j])
		}
	}
	return out
}

// ContestantResult sums up one contestant.
type ContestantResult struct {
	Name string `json:"name"`
	Info
	// Status is "ok" when every case asked was answered, "partial" when
	// some were, "failed" when none was. Error says why for the others:
	// what stopped the contestant (it could not start, a rejected key, too
	// many failures in a row, its budget), else the first case's error;
	// FirstError is the first failed case's own error. Answers so far are
	// kept and scored.
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	FirstError string `json:"first_error,omitempty"`
	Asked      int    `json:"asked"`
	Answered   int    `json:"answered"`
	Failed     int    `json:"failed"`
	Cached     int    `json:"cached"`
	Usage      Usage  `json:"usage"`
	// Cost is the price of every answer; Spent, of those not taken from
	// the cache in this run.
	Cost         float64 `json:"cost_usd"`
	Spent        float64 `json:"spent_usd"`
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	// HitLimit of the Answered answers ended at max_tokens (or a full
	// context), cut off; of LimitUnknown it is not known (a server that
	// did not say, answers cached before finetune kept it).
	HitLimit     int                   `json:"hit_limit"`
	LimitUnknown int                   `json:"limit_unknown,omitempty"`
	Scores       map[string]Score      `json:"scores"`
	Confusion    map[string]*Confusion `json:"confusion,omitempty"`
}

// CostPerThousand is what 1,000 answers cost at the contestant's price:
// the mean cost of its answers in this run, times 1,000 (0 without
// answers).
func (c *ContestantResult) CostPerThousand() float64 {
	if c.Answered == 0 {
		return 0
	}
	return c.Cost / float64(c.Answered) * 1000
}

// LimitText is how many answers hit max_tokens: "3 of 100", with ", 2
// unknown" when some answers' finish is not known.
func (c *ContestantResult) LimitText() string {
	s := fmt.Sprintf("%d of %d", c.HitLimit, c.Answered)
	if c.LimitUnknown > 0 {
		s += fmt.Sprintf(", %d unknown", c.LimitUnknown)
	}
	return s
}

// LimitWarning is the warning shown beside a contestant's scores when
// most of its answers hit max_tokens ("" otherwise): its scores read
// answers cut off, not what the model would have said.
func (c *ContestantResult) LimitWarning() string {
	if c.Answered == 0 || 2*c.HitLimit <= c.Answered {
		return ""
	}
	limit := "max_tokens"
	if c.Settings.MaxTokens > 0 {
		limit = fmt.Sprintf("max_tokens (%d)", c.Settings.MaxTokens)
	}
	return fmt.Sprintf("%s: %d of %d answers hit %s and were cut off; its scores read cut-off answers "+
		"(raise generation.max_tokens, or check that the model ends its answers)", c.Name, c.HitLimit, c.Answered, limit)
}

// Comparison is Contestant minus Against on one column, over the N cases
// both have a score for, with a paired bootstrap 95% confidence interval,
// and how often Contestant scored higher, equal or lower case by case (for
// columns scored per case). Incomplete when N is below the Asked cases:
// the comparison covers only those; with N 0 there is none (Diff, Low and
// High are 0 and mean nothing).
type Comparison struct {
	Contestant string  `json:"contestant"`
	Against    string  `json:"against"`
	Column     string  `json:"column"`
	Diff       float64 `json:"diff"`
	Low        float64 `json:"ci_low"`
	High       float64 `json:"ci_high"`
	N          int     `json:"n"`
	Asked      int     `json:"asked"`
	Incomplete bool    `json:"incomplete,omitempty"`
	Wins       int     `json:"wins"`
	Ties       int     `json:"ties"`
	Losses     int     `json:"losses"`
}

// Significant reports whether the confidence interval excludes 0.
func (c Comparison) Significant() bool { return c.N > 0 && (c.Low > 0 || c.High < 0) }

// JudgeResult sums up a judge's work.
type JudgeResult struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Model  string  `json:"model"`
	Calls  int     `json:"calls"`
	Cached int     `json:"cached"`
	Failed int     `json:"failed"`
	Usage  Usage   `json:"usage"`
	Cost   float64 `json:"cost_usd"`
	Error  string  `json:"error,omitempty"`
}

// CaseResult is one case with every contestant's answer.
type CaseResult struct {
	Index     int          `json:"index"`
	Source    string       `json:"source,omitempty"`
	Prompt    []Message    `json:"prompt"`
	Reference string       `json:"reference"`
	Label     string       `json:"label,omitempty"`
	Answers   []CaseAnswer `json:"answers"`
}

// CaseAnswer is one contestant's answer to a case and its scores.
type CaseAnswer struct {
	Contestant string  `json:"contestant"`
	Text       string  `json:"text"`
	Error      string  `json:"error,omitempty"`
	Usage      Usage   `json:"usage"`
	LatencyMS  float64 `json:"latency_ms"`
	Cached     bool    `json:"cached,omitempty"`
	Retries    int     `json:"retries,omitempty"`
	// FinishReason: "stop" (the model ended the answer), "length" (it
	// hit max_tokens), absent when unknown.
	FinishReason string             `json:"finish_reason,omitempty"`
	Scores       map[string]float64 `json:"scores,omitempty"`
	// Details say what a score was made of: the extracted label, the
	// judge's reply, why a score is missing.
	Details map[string]string `json:"details,omitempty"`
	ok      bool
}

// Contestant returns the named contestant's result, or nil.
func (r *Results) Contestant(name string) *ContestantResult {
	for i := range r.Contestants {
		if r.Contestants[i].Name == name {
			return &r.Contestants[i]
		}
	}
	return nil
}

// Compare returns the comparison of a with b on column, or nil.
func (r *Results) Compare(a, b, column string) *Comparison {
	for i := range r.Comparisons {
		c := &r.Comparisons[i]
		if c.Contestant == a && c.Against == b && c.Column == column {
			return c
		}
	}
	return nil
}

// Run asks every contestant every case of s, judges and scores the answers
// and compares the contestants. Contestants run concurrently, each with its
// own concurrency limit. A contestant that cannot start, or stops for good
// (a rejected key, MaxConsecutiveFailures failures in a row, its time
// budget spent), keeps the answers it gave; its status says what happened
// (ok, partial, failed) and the others go on. The API keys of the
// contestants and judges are removed from every answer, error, log line,
// cache entry and result. Run returns an error only for an invalid suite or
// when ctx is cancelled; the answers received until then are in the cache,
// and the next run resumes from them.
func Run(ctx context.Context, s Suite, cs []Contestant, o RunOptions) (*Results, error) {
	start := time.Now()
	o, metrics, err := prepareRun(s, cs, o)
	if err != nil {
		return nil, err
	}
	red := newRedactor(append(slices.Clip(cs), judgesOf(metrics)...)...)
	o.Logger = red.logger(o.Logger)
	ctx = withLogger(ctx, o.Logger)
	r := &runner{opts: o, cases: s.Cases, metrics: metrics, red: red}
	if o.CacheDir != "" {
		r.cache = &cache{dir: o.CacheDir}
	}
	r.answer(ctx, cs)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	scores := r.score(cs)
	if err := r.prefer(ctx, cs, scores); err != nil {
		return nil, err
	}
	if err := r.judge(ctx, cs, scores); err != nil {
		return nil, err
	}
	res := r.results(cs, scores)
	res.Selection = s.Selection
	res.Created = start.UTC()
	res.WallSeconds = time.Since(start).Seconds()
	red.results(res)
	return res, nil
}

// judgesOf lists the judges of the metrics.
func judgesOf(ms []Metric) []Contestant {
	var js []Contestant
	for _, m := range ms {
		if m.Judge != nil {
			js = append(js, m.Judge)
		}
	}
	return js
}

// prepareRun checks the suite, the contestants and the options, and returns
// the options with their defaults filled in and the prepared metrics.
func prepareRun(s Suite, cs []Contestant, o RunOptions) (RunOptions, []Metric, error) {
	if len(cs) == 0 {
		return o, nil, errors.New("no contestants")
	}
	if len(s.Cases) == 0 {
		return o, nil, errors.New("no eval cases")
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if err := checkName(c.Name()); err != nil {
			return o, nil, fmt.Errorf("contestant %w", err)
		}
		if seen[c.Name()] {
			return o, nil, fmt.Errorf("two contestants are named %q", c.Name())
		}
		seen[c.Name()] = true
	}
	if o.Base == "" {
		o.Base = cs[0].Name()
	}
	if !seen[o.Base] {
		return o, nil, fmt.Errorf("the base contestant %q is not among the contestants", o.Base)
	}
	if o.Bootstrap <= 0 {
		o.Bootstrap = 2000
	}
	if o.MaxConsecutiveFailures <= 0 {
		o.MaxConsecutiveFailures = 5
	}
	if o.WaitReports <= 0 {
		o.WaitReports = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	metrics := make([]Metric, len(s.Metrics))
	copy(metrics, s.Metrics)
	columns := map[string]bool{}
	for i := range metrics {
		m := &metrics[i]
		if err := m.prepare(); err != nil {
			return o, nil, err
		}
		if m.Kind == JudgePairwise {
			if m.Against == "" {
				m.Against = o.Base
			}
			if !seen[m.Against] {
				return o, nil, fmt.Errorf("metric %s: compares with %q, which is not a contestant", m.Name, m.Against)
			}
		}
		for _, col := range m.Columns() {
			if columns[col] {
				return o, nil, fmt.Errorf("two metrics make a column named %q", col)
			}
			columns[col] = true
		}
	}
	if len(metrics) == 0 {
		return o, nil, errors.New("no metrics")
	}
	return o, metrics, nil
}

// answer asks every contestant every case, the contestants concurrently.
func (r *runner) answer(ctx context.Context, cs []Contestant) {
	r.answers = make([][]CaseAnswer, len(cs))
	r.askers = make([]*asker, len(cs))
	var wg sync.WaitGroup
	for ci, c := range cs {
		r.answers[ci] = make([]CaseAnswer, len(r.cases))
		a := r.askerFor(c)
		r.askers[ci] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := a.ask(ctx, "answer", r.cases, func(i int, res reply) {
				ca := &r.answers[ci][i]
				*ca = CaseAnswer{Contestant: c.Name(), Text: res.answer.Text, Usage: res.answer.Usage,
					LatencyMS: ms(res.answer.Latency), Cached: res.cached, Retries: res.answer.Retries, FinishReason: res.answer.FinishReason,
					ok: res.err == nil}
				if res.err != nil {
					ca.Text, ca.Error = "", res.err.Error()
				}
			})
			a.answerErr, a.firstErr = a.err, first
		}()
	}
	wg.Wait()
}

// runner holds a run's state.
type runner struct {
	opts    RunOptions
	cases   []Case
	metrics []Metric
	cache   *cache
	red     *redactor
	askers  []*asker // one per contestant
	judges  []*asker // judges that are not contestants
	answers [][]CaseAnswer
	mu      sync.Mutex // serialises Progress
}

func (r *runner) askerFor(c Contestant) *asker {
	for _, a := range append(r.askers, r.judges...) {
		if a != nil && a.c == c {
			return a
		}
	}
	return &asker{c: c, r: r}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reply is the outcome of one request.
type reply struct {
	answer   Answer
	cached   bool
	err      error // secrets removed
	notAsked bool  // failed without being asked: the contestant had failed
}

// errBudget is the cause of a contestant's context ended by its budget.
var errBudget = errors.New("time budget spent")

// asker asks one contestant: start, cache, concurrency or batching,
// failure accounting, its time budget.
type asker struct {
	c        Contestant
	r        *runner
	started  bool
	info     Info
	budget   time.Duration
	deadline time.Time // when the budget runs out; zero: no budget
	err      error     // why the contestant failed for good
	// After the answers: why the contestant stopped (nil: it did not),
	// and the first failed case's error.
	answerErr, firstErr error
	calls               int
	cached              int
	failed              int
	usage               Usage
	spent               Usage
}

func (a *asker) budgetErr() error {
	return fmt.Errorf("its time budget of %s ran out", a.budget)
}

// ask answers cases through the contestant, calling done once per case
// (from any goroutine, one call at a time), except for the cases ctx's
// cancellation left unanswered: the contestant is started the first time,
// answers in the cache are taken from it, and the others are asked in
// batches or by concurrent workers, within the contestant's budget. It
// returns the first failed case's error.
func (a *asker) ask(ctx context.Context, phase string, cases []Case, done func(int, reply)) (firstErr error) {
	q := &askRound{a: a, ctx: ctx, phase: phase, cases: cases, done: done, inflight: map[int]*flight{}, lastReport: time.Now()}
	defer q.heartbeat()()
	a.start(ctx, q)
	if ctx.Err() != nil {
		return nil
	}
	q.bctx = ctx
	if !a.deadline.IsZero() {
		var cancel context.CancelFunc
		q.bctx, cancel = context.WithDeadlineCause(ctx, a.deadline, errBudget)
		defer cancel()
	}
	if a.err != nil {
		for i := range cases {
			q.report(i, reply{err: a.r.red.err(fmt.Errorf("not asked: %s failed: %w", a.c.Name(), a.err)), notAsked: true})
		}
		return nil
	}
	pending := q.fromCache()
	cctx, cancel := context.WithCancel(q.bctx)
	defer cancel()
	q.cancel = cancel
	if b, ok := a.c.(Batcher); ok && b.BatchSize() > 1 {
		q.inBatches(cctx, b, pending)
	} else {
		q.concurrently(cctx, pending)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.firstErr
}

// start starts the contestant, once, within its budget, and reads its
// Info.
func (a *asker) start(ctx context.Context, q *askRound) {
	if a.started {
		return
	}
	a.started = true
	if rt := a.c.Info().Retry; rt != nil && rt.Budget > 0 {
		a.budget, a.deadline = rt.Budget, time.Now().Add(rt.Budget)
	}
	if st, ok := a.c.(Starter); ok {
		sctx := ctx
		if !a.deadline.IsZero() {
			var cancel context.CancelFunc
			sctx, cancel = context.WithDeadlineCause(ctx, a.deadline, errBudget)
			defer cancel()
		}
		q.setStarting(true)
		err := st.Start(sctx)
		q.setStarting(false)
		if err != nil {
			a.err = err
			if errors.Is(context.Cause(sctx), errBudget) {
				a.err = a.budgetErr()
			}
		}
	}
	a.info = a.c.Info()
	if a.info.Concurrency < 1 {
		a.info.Concurrency = 1
	}
	if a.err != nil && ctx.Err() == nil {
		a.r.opts.Logger.Warn("contestant failed", "contestant", a.c.Name(), "err", a.err)
	}
}

// askRound is one call of ask: its cases, their cache keys, the progress
// counts, the requests in flight and the contestant's failures in a row.
type askRound struct {
	a     *asker
	ctx   context.Context // the caller's
	bctx  context.Context // the caller's, ended by the contestant's budget
	phase string
	cases []Case
	done  func(int, reply)
	cache *cache // nil: answers are not cached
	keys  []string

	mu                       sync.Mutex // serialises report; guards the fields below
	finished, cached, failed int
	firstErr                 error
	lastReport               time.Time       // of the last Progress
	starting                 time.Time       // when Start began; zero once it returned
	inflight                 map[int]*flight // the cases being asked

	fmu         sync.Mutex // guards consecutive and the asker's err
	consecutive int
	cancel      context.CancelFunc // stops asking once the contestant is given up
}

// report accounts for the reply to case i, hands it to done and tells
// Progress.
func (q *askRound) report(i int, res reply) {
	a := q.a
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finished++
	a.calls++
	if res.cached {
		q.cached++
		a.cached++
	}
	if res.err != nil {
		q.failed++
		a.failed++
		if !res.notAsked && q.firstErr == nil {
			q.firstErr = res.err
		}
	} else {
		a.usage.add(res.answer.Usage)
		if !res.cached {
			a.spent.add(res.answer.Usage)
		}
	}
	q.lastReport = time.Now()
	q.done(i, res)
	if p := a.r.opts.Progress; p != nil {
		a.r.mu.Lock()
		p(Progress{Phase: q.phase, Contestant: a.c.Name(), Done: q.finished, Total: len(q.cases), Cached: q.cached, Failed: q.failed,
			Err: res.err, NotAsked: res.notAsked})
		a.r.mu.Unlock()
	}
}

// fromCache reports the cases whose answers the cache holds and returns
// the others. A contestant without an Identity is not cached.
func (q *askRound) fromCache() (pending []int) {
	a := q.a
	q.cache = a.r.cache
	if a.info.Identity == "" {
		q.cache = nil
	}
	q.keys = make([]string, len(q.cases))
	for i := range q.cases {
		if q.cache != nil {
			q.keys[i] = cacheKey(a.info.Identity, &q.cases[i])
			if ans, ok := q.cache.get(q.keys[i]); ok {
				ans.Text = a.r.red.text(ans.Text)
				q.report(i, reply{answer: ans, cached: true})
				continue
			}
		}
		pending = append(pending, i)
	}
	return pending
}

// record takes the contestant's answer to case i. A failure counts towards
// giving the contestant up (a FatalError at once, else
// MaxConsecutiveFailures in a row; its budget spent), which stops the
// asking; a case ctx's cancellation left unanswered is not recorded at
// all. An answer, its secrets removed, goes into the cache.
func (q *askRound) record(i int, ans Answer, err error) {
	if err != nil && q.ctx.Err() != nil {
		return // interrupted: neither answered nor failed; the next run asks it
	}
	a := q.a
	notAsked := false
	q.fmu.Lock()
	switch {
	case err == nil:
		q.consecutive = 0
	case a.err != nil:
		err, notAsked = fmt.Errorf("not asked: %s failed: %w", a.c.Name(), a.err), true
	default:
		q.consecutive++
		var fe *FatalError
		switch {
		case errors.Is(context.Cause(q.bctx), errBudget):
			a.err = a.budgetErr()
			err = fmt.Errorf("not answered: %w", a.err)
		case errors.As(err, &fe):
			a.err = err
		case q.consecutive >= a.r.opts.MaxConsecutiveFailures:
			a.err = fmt.Errorf("gave up after %d failures in a row; the last: %w", q.consecutive, err)
		}
		if a.err != nil {
			a.r.opts.Logger.Warn("contestant failed", "contestant", a.c.Name(), "err", a.err)
			q.cancel()
		}
	}
	q.fmu.Unlock()
	ans.Text = a.r.red.text(ans.Text)
	if err == nil && q.cache != nil {
		if cerr := q.cache.put(q.keys[i], a.info, a.c.Name(), ans); cerr != nil {
			a.r.opts.Logger.Warn("response cache", "err", cerr)
		}
	}
	q.report(i, reply{answer: ans, err: a.r.red.err(err), notAsked: notAsked})
}

// inBatches asks the pending cases BatchSize at a time, one batch after
// the other, or a Streamer all of them at once.
func (q *askRound) inBatches(ctx context.Context, b Batcher, pending []int) {
	if s, ok := b.(Streamer); ok {
		// BatchSize cases are in flight at a time (as waits report
		// them): one more each time one lands.
		batch := make([]Case, len(pending))
		for k, i := range pending {
			batch[k] = q.cases[i]
		}
		flown := min(b.BatchSize(), len(pending))
		for _, i := range pending[:flown] {
			q.fly(i)
		}
		s.AnswerEach(ctx, batch, func(k int, a Answer, err error) {
			q.land(pending[k])
			if flown < len(pending) {
				q.fly(pending[flown])
				flown++
			}
			q.record(pending[k], a, err)
		})
		return
	}
	n := b.BatchSize()
	for lo := 0; lo < len(pending); lo += n {
		idx := pending[lo:min(lo+n, len(pending))]
		if ctx.Err() != nil {
			for _, i := range idx {
				q.record(i, Answer{}, ctx.Err())
			}
			continue
		}
		batch := make([]Case, len(idx))
		for k, i := range idx {
			batch[k] = q.cases[i]
			q.fly(i)
		}
		answers, errs := b.AnswerBatch(ctx, batch)
		for k, i := range idx {
			q.land(i)
			q.record(i, answers[k], errs[k])
		}
	}
}

// concurrently asks the pending cases one at a time each, with as many
// workers as the contestant's Concurrency.
func (q *askRound) concurrently(ctx context.Context, pending []int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(q.a.info.Concurrency, max(len(pending), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if ctx.Err() != nil {
					q.record(i, Answer{}, ctx.Err())
					continue
				}
				f := q.fly(i)
				ans, err := q.a.c.Answer(withFlight(ctx, f), q.cases[i])
				q.land(i)
				q.record(i, ans, err)
			}
		}()
	}
	for _, i := range pending {
		work <- i
	}
	close(work)
	wg.Wait()
}

// scoreTable holds every per-case score: [metric column][contestant][case],
// NaN where there is none.
type scoreTable map[string][][]float64

// score scores every answer on the metrics that need no judge.
func (r *runner) score(cs []Contestant) scoreTable {
	t := scoreTable{}
	for mi := range r.metrics {
		m := &r.metrics[mi]
		t[m.Name] = make([][]float64, len(cs))
		for ci := range cs {
			vals := make([]float64, len(r.cases))
			for i := range vals {
				vals[i] = math.NaN()
				ca := &r.answers[ci][i]
				if !ca.ok || m.isJudge() {
					continue
				}
				v, detail, ok := m.score(ca.Text, &r.cases[i])
				if ok {
					vals[i] = v
					ca.setScore(m.Name, v)
				}
				if detail != "" || (m.Kind == Label) {
					ca.setDetail(m.Name, detail)
				}
			}
			t[m.Name][ci] = vals
		}
	}
	return t
}

func (ca *CaseAnswer) setScore(col string, v float64) {
	if ca.Scores == nil {
		ca.Scores = map[string]float64{}
	}
	ca.Scores[col] = v
}

func (ca *CaseAnswer) setDetail(col, d string) {
	if ca.Details == nil {
		ca.Details = map[string]string{}
	}
	ca.Details[col] = d
}

// judgeReq is one question to a judge.
type judgeReq struct {
	metric, contestant, caseIdx int
	order                       int // pairwise: 0 contestant shown as A, 1 as B
}

// judge asks the judges of the judge metrics and fills their scores.
func (r *runner) judge(ctx context.Context, cs []Contestant, t scoreTable) error {
	jobs := r.judgeJobs(cs)
	v := &verdicts{r: r, t: t, halves: map[pairKey][2]*float64{}, replies: map[pairKey][2]string{}}
	var wg sync.WaitGroup
	for _, jb := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jb.a.ask(ctx, "judge", jb.qs, func(k int, res reply) { v.take(jb.reqs[k], res) })
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// judgeJob is everything one judge is asked: each request and its
// prompt.
type judgeJob struct {
	a    *asker
	reqs []judgeReq
	qs   []Case
}

// judgeJobs gathers the requests of the judge metrics, one job per judge:
// a rubric grade of every answer, and pairwise verdicts, in both orders,
// of every answer against the one it is compared with.
func (r *runner) judgeJobs(cs []Contestant) []*judgeJob {
	index := map[string]int{}
	for ci, c := range cs {
		index[c.Name()] = ci
	}
	var jobs []*judgeJob
	jobFor := func(j Contestant) *judgeJob {
		a := r.askerFor(j)
		for _, jb := range jobs {
			if jb.a == a {
				return jb
			}
		}
		if !contains(r.askers, a) && !contains(r.judges, a) {
			r.judges = append(r.judges, a)
		}
		jb := &judgeJob{a: a}
		jobs = append(jobs, jb)
		return jb
	}
	for mi := range r.metrics {
		m := &r.metrics[mi]
		if !m.isJudge() {
			continue
		}
		jb := jobFor(m.Judge)
		for ci := range cs {
			against := -1
			if m.Kind == JudgePairwise {
				against = index[m.Against]
				if ci == against {
					continue
				}
			}
			r.addJudgeRequests(jb, mi, ci, against)
		}
	}
	return jobs
}

// addJudgeRequests adds to jb the requests of metric mi about the answers
// of contestant ci, compared with those of contestant against for a
// pairwise metric.
func (r *runner) addJudgeRequests(jb *judgeJob, mi, ci, against int) {
	m := &r.metrics[mi]
	for i := range r.cases {
		ca := &r.answers[ci][i]
		c := &r.cases[i]
		if !ca.ok {
			continue
		}
		if m.Kind == JudgeRubric {
			jb.reqs = append(jb.reqs, judgeReq{mi, ci, i, 0})
			jb.qs = append(jb.qs, rubricPrompt(m.Rubric, c, ca.Text))
			continue
		}
		other := &r.answers[against][i]
		if !other.ok {
			ca.setDetail(m.Name, "no score: "+m.Against+" has no answer to compare with")
			continue
		}
		jb.reqs = append(jb.reqs, judgeReq{mi, ci, i, 0}, judgeReq{mi, ci, i, 1})
		jb.qs = append(jb.qs, pairwisePrompt(c, ca.Text, other.Text), pairwisePrompt(c, other.Text, ca.Text))
	}
}

// pairKey names the two pairwise verdicts on one answer.
type pairKey struct{ metric, contestant, caseIdx int }

// verdicts turns the judges' replies into scores. Pairwise verdicts arrive
// in any order; both are kept until the pair is complete.
type verdicts struct {
	r       *runner
	t       scoreTable
	mu      sync.Mutex
	halves  map[pairKey][2]*float64
	replies map[pairKey][2]string
}

// take scores the answer that request q was about with the judge's reply.
func (v *verdicts) take(q judgeReq, res reply) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.r.metrics[q.metric].Kind == JudgeRubric {
		v.grade(q, res)
		return
	}
	v.pairwise(q, res)
}

// grade scores an answer with a rubric judge's grade.
func (v *verdicts) grade(q judgeReq, res reply) {
	m := &v.r.metrics[q.metric]
	ca := &v.r.answers[q.contestant][q.caseIdx]
	if res.err != nil {
		ca.setDetail(m.Name, "no score: the judge failed: "+res.err.Error())
		return
	}
	ca.setDetail(m.Name, res.answer.Text)
	if s, ok := parseScore(res.answer.Text); ok {
		v.t[m.Name][q.contestant][q.caseIdx] = s
		ca.setScore(m.Name, s)
	} else {
		ca.setDetail(m.Name, "no score: the judge's reply has no grade: "+clipText(res.answer.Text, 300))
	}
}

// pairwise keeps one of the two verdicts on an answer and, once both are
// in, scores the answer with their mean preference.
func (v *verdicts) pairwise(q judgeReq, res reply) {
	m := &v.r.metrics[q.metric]
	ca := &v.r.answers[q.contestant][q.caseIdx]
	pk := pairKey{q.metric, q.contestant, q.caseIdx}
	h, rep := v.halves[pk], v.replies[pk]
	pos := [2]string{"A", "B"}[q.order]
	if res.err != nil {
		rep[q.order] = "the judge failed: " + res.err.Error()
	} else if verdict, ok := parseVerdict(res.answer.Text); ok {
		p := preference(verdict, pos)
		h[q.order] = &p
		rep[q.order] = res.answer.Text
	} else {
		rep[q.order] = "no verdict in: " + clipText(res.answer.Text, 300)
	}
	v.halves[pk], v.replies[pk] = h, rep
	if rep[0] == "" || rep[1] == "" {
		return
	}
	detail := fmt.Sprintf("shown as A: %s\n\nshown as B: %s", rep[0], rep[1])
	if h[0] == nil || h[1] == nil {
		ca.setDetail(m.Name, "no score: "+detail)
		return
	}
	s := (*h[0] + *h[1]) / 2
	v.t[m.Name][q.contestant][q.caseIdx] = s
	ca.setScore(m.Name, s)
	ca.setDetail(m.Name, detail)
}

func contains(as []*asker, a *asker) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// column is one reported number: a metric's mean, or a label metric's
// macro-F1.
type column struct {
	name    string
	metric  *Metric
	perCase bool
}

func (r *runner) columns() []column {
	var cols []column
	for mi := range r.metrics {
		m := &r.metrics[mi]
		cols = append(cols, column{m.Name, m, true})
		if m.Kind == Label {
			cols = append(cols, column{m.Name + "_macro_f1", m, false})
		}
	}
	return cols
}

// aggregate is a column's value for contestant ci over the cases idx.
func (r *runner) aggregate(t scoreTable, col column, ci int, idx []int) float64 {
	if col.perCase {
		vals := t[col.metric.Name][ci]
		s := 0.0
		for _, i := range idx {
			s += vals[i]
		}
		return s / float64(len(idx))
	}
	gold, pred := make([]string, len(idx)), make([]string, len(idx))
	for k, i := range idx {
		gold[k] = col.metric.gold(&r.cases[i])
		pred[k] = r.answers[ci][i].Details[col.metric.Name]
	}
	return macroF1(gold, pred)
}

// scored lists the cases with a score for every contestant given.
func scored(t scoreTable, col column, cis ...int) []int {
	vals := t[col.metric.Name]
	var idx []int
	for i := range vals[cis[0]] {
		ok := true
		for _, ci := range cis {
			ok = ok && !math.IsNaN(vals[ci][i])
		}
		if ok {
			idx = append(idx, i)
		}
	}
	return idx
}

// results assembles the Results: the metrics, each contestant's
// summary, the comparisons, the judges' work and every case.
func (r *runner) results(cs []Contestant, t scoreTable) *Results {
	res := &Results{Base: r.opts.Base, Bootstrap: r.opts.Bootstrap, Metrics: r.metricInfos()}
	cols := r.columns()
	boot := newBootstrap(r.opts.Bootstrap, r.opts.Seed)
	base := 0
	for ci, c := range cs {
		if c.Name() == r.opts.Base {
			base = ci
		}
		res.Contestants = append(res.Contestants, r.contestantResult(t, cols, boot, ci, c))
	}
	for _, p := range comparedPairs(len(cs), base) {
		for _, col := range cols {
			res.Comparisons = append(res.Comparisons, r.compare(t, col, boot, cs, p[0], p[1]))
		}
	}
	res.Judges = r.judgeResults(cs, res.Contestants)
	for i, c := range r.cases {
		cr := CaseResult{Index: i, Source: c.Source, Prompt: c.Prompt, Reference: c.Reference, Label: c.Label}
		for ci := range cs {
			cr.Answers = append(cr.Answers, r.answers[ci][i])
		}
		res.Cases = append(res.Cases, cr)
	}
	return res
}

// metricInfos describes the metrics for the results.
func (r *runner) metricInfos() []MetricInfo {
	var infos []MetricInfo
	for mi := range r.metrics {
		m := &r.metrics[mi]
		info := MetricInfo{Name: m.Name, Kind: m.Kind, Columns: m.Columns(), Normalize: m.Normalize, Pattern: m.Pattern,
			JSONField: m.JSONField, Rubric: m.Rubric, Against: m.Against, Max: 1}
		if m.Judge != nil {
			info.Judge = m.Judge.Name()
		}
		if m.Kind == JudgeRubric {
			info.Max = 5
		}
		infos = append(infos, info)
	}
	return infos
}

// contestantResult sums up contestant ci: its status, answers, usage,
// cost and latency, its score on every column with a confidence interval,
// and its confusion matrices.
func (r *runner) contestantResult(t scoreTable, cols []column, boot *bootstrap, ci int, c Contestant) ContestantResult {
	a := r.askers[ci]
	cr := ContestantResult{Name: c.Name(), Info: a.info, Asked: len(r.cases), Scores: map[string]Score{}}
	var lat []float64
	for i := range r.cases {
		ca := &r.answers[ci][i]
		switch {
		case ca.ok:
			cr.Answered++
			cr.Usage.add(ca.Usage)
			cost := cr.Price.Cost(ca.Usage)
			cr.Cost += cost
			if !ca.Cached {
				cr.Spent += cost
			}
			lat = append(lat, ca.LatencyMS)
			switch ca.FinishReason {
			case FinishLength:
				cr.HitLimit++
			case "":
				cr.LimitUnknown++
			}
		default:
			cr.Failed++
		}
		if ca.Cached {
			cr.Cached++
		}
	}
	switch {
	case cr.Answered == cr.Asked:
		cr.Status = "ok"
	case cr.Answered == 0:
		cr.Status = "failed"
	default:
		cr.Status = "partial"
	}
	if a.firstErr != nil {
		cr.FirstError = a.firstErr.Error()
	}
	if cr.Status != "ok" {
		cr.Error = cr.FirstError
		if a.answerErr != nil {
			cr.Error = r.red.errText(a.answerErr.Error())
		}
	}
	cr.LatencyP50MS, cr.LatencyP95MS = percentile(lat, 50), percentile(lat, 95)
	for _, col := range cols {
		idx := scored(t, col, ci)
		if len(idx) == 0 {
			continue
		}
		v := r.aggregate(t, col, ci, idx)
		lo, hi := boot.ci(idx, func(sample []int) float64 { return r.aggregate(t, col, ci, sample) })
		cr.Scores[col.name] = Score{Value: v, Low: lo, High: hi, N: len(idx), Asked: len(r.cases), Incomplete: len(idx) < len(r.cases)}
	}
	for mi := range r.metrics {
		if m := &r.metrics[mi]; m.Kind == Label {
			if cr.Confusion == nil {
				cr.Confusion = map[string]*Confusion{}
			}
			cr.Confusion[m.Name] = r.confusion(m, ci)
		}
	}
	return cr
}

// comparedPairs lists the pairs of n contestants compared, as [contestant,
// against]: everyone against the base, then every other pair, the later
// contestant against the earlier.
func comparedPairs(n, base int) [][2]int {
	var pairs [][2]int
	for ci := 0; ci < n; ci++ {
		if ci != base {
			pairs = append(pairs, [2]int{ci, base})
		}
	}
	for a := 0; a < n; a++ {
		for b := a + 1; b < n; b++ {
			if a != base && b != base {
				pairs = append(pairs, [2]int{b, a})
			}
		}
	}
	return pairs
}

// compare compares contestant a with b on col over the cases both have a
// score for: the difference with a paired bootstrap interval, and wins,
// ties and losses case by case for columns scored per case.
func (r *runner) compare(t scoreTable, col column, boot *bootstrap, cs []Contestant, a, b int) Comparison {
	cmp := Comparison{Contestant: cs[a].Name(), Against: cs[b].Name(), Column: col.name, Asked: len(r.cases)}
	idx := scored(t, col, a, b)
	cmp.N = len(idx)
	cmp.Incomplete = cmp.N < cmp.Asked
	if cmp.N == 0 {
		return cmp
	}
	diff := func(sample []int) float64 {
		return r.aggregate(t, col, a, sample) - r.aggregate(t, col, b, sample)
	}
	cmp.Diff = diff(idx)
	cmp.Low, cmp.High = boot.ci(idx, diff)
	if col.perCase {
		va, vb := t[col.metric.Name][a], t[col.metric.Name][b]
		for _, i := range idx {
			switch {
			case va[i] > vb[i]:
				cmp.Wins++
			case va[i] < vb[i]:
				cmp.Losses++
			default:
				cmp.Ties++
			}
		}
	}
	return cmp
}

// judgeResults sums up the judges' work: the judges that are not
// contestants, then the contestants that also judged, their judging told
// apart from their answers (contestants, their results).
func (r *runner) judgeResults(cs []Contestant, contestants []ContestantResult) []JudgeResult {
	var out []JudgeResult
	for _, a := range r.judges {
		jr := JudgeResult{Name: a.c.Name(), Kind: a.info.Kind, Model: a.info.Model, Calls: a.calls, Cached: a.cached, Failed: a.failed,
			Usage: a.usage, Cost: a.info.Price.Cost(a.usage)}
		if a.err != nil {
			jr.Error = r.red.errText(a.err.Error())
		}
		out = append(out, jr)
	}
	for ci, a := range r.askers {
		if a.calls > len(r.cases) { // also judged
			jr := JudgeResult{Name: cs[ci].Name(), Kind: a.info.Kind, Model: a.info.Model, Calls: a.calls - len(r.cases)}
			judged := a.usage
			judged.PromptTokens -= contestants[ci].Usage.PromptTokens
			judged.CompletionTokens -= contestants[ci].Usage.CompletionTokens
			jr.Usage, jr.Cost = judged, a.info.Price.Cost(judged)
			jr.Cached = a.cached - contestants[ci].Cached
			jr.Failed = a.failed - contestants[ci].Failed
			out = append(out, jr)
		}
	}
	return out
}

// confusion counts reference labels against extracted labels, and the
// extracted labels that are none of the cases' labels.
func (r *runner) confusion(m *Metric, ci int) *Confusion {
	set := map[string]bool{}
	for i := range r.cases {
		set[m.gold(&r.cases[i])] = true
	}
	labels := make([]string, 0, len(set))
	for l := range set {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	pos := map[string]int{}
	for i, l := range labels {
		pos[l] = i
	}
	c := &Confusion{Labels: labels, Predicted: append(append([]string{}, labels...), "(other)"), Counts: make([][]int, len(labels))}
	other := map[string]int{}
	for i := range c.Counts {
		c.Counts[i] = make([]int, len(labels)+1)
	}
	for i := range r.cases {
		ca := &r.answers[ci][i]
		if !ca.ok {
			continue
		}
		g := pos[m.gold(&r.cases[i])]
		pred := ca.Details[m.Name]
		p, ok := pos[pred]
		if !ok {
			p = len(labels)
			if pred == "" {
				c.NoLabel++
			} else {
				c.NotALabel++
				other[pred]++
			}
		}
		c.Counts[g][p]++
	}
	for l, n := range other {
		c.NotALabelTop = append(c.NotALabelTop, LabelCount{l, n})
	}
	slices.SortFunc(c.NotALabelTop, func(a, b LabelCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Label, b.Label)
	})
	if len(c.NotALabelTop) > 10 {
		c.NotALabelTop = c.NotALabelTop[:10]
	}
	return c
}
