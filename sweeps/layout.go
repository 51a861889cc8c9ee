package sweeps

// A sweep folder, sweeps/<recipe name>/<timestamp>/ unless --out names
// another. Several processes write into it at once (one per running
// trial, and the one that submitted them), so every file has one writer
// or is written under a lock, and all are written atomically
// (internal/atomicfile).
const (
	// SpecFile is the resolved sweep (Spec): the recipe and overrides, the
	// grid, every trial's settings, the executor and its resources.
	// Written once by Create; read by every other step.
	SpecFile = "sweep.json"
	// TrialsDir holds one run folder per trial, TrialsDir/NNN (an
	// ordinary run of the runs package: train, eval, export and publish
	// take it as any other). Written by the trial's own process.
	TrialsDir = "trials"
	// StateDir holds StateDir/NNN.json, the trial's Status: running, done
	// or failed with its error, attempts, host, Slurm task, times. Written
	// only by the process running that trial (and by Create for a trial
	// whose recipe does not check).
	StateDir = "state"
	// JobsFile lists the submissions (Job): Slurm array jobs or local
	// runner processes, with the trials each ran. Written under LockFile
	// by Submit; read by Status and Cancel.
	JobsFile = "jobs.json"
	// LogsDir holds each task's output: slurm-%A_%a.out (Slurm's), or
	// local-NNN.log.
	LogsDir = "logs"
	// TaskScript is the batch script of the Slurm array job. Written by
	// Submit.
	TaskScript = "task.sh"
	// CacheDir is the eval answer cache every trial shares: the API
	// contestants (answered once, before the trials start) and the base.
	CacheDir = "cache"
	// LeaderboardMD, LeaderboardHTML and LeaderboardJSON are the
	// leaderboard. Written under LeaderboardLock by each trial as it ends
	// and by `finetune sweep status`.
	LeaderboardMD   = "leaderboard.md"
	LeaderboardHTML = "leaderboard.html"
	LeaderboardJSON = "leaderboard.json"
	// The sweep's MLflow run, the parent of its trials' runs, is named in
	// track.MLflowFile (what is unsent in track.PendingFile), written when
	// the sweep is made and with the leaderboard, under LeaderboardLock.
	// LockFile is held (flock) while submitting, resuming or cancelling;
	// LeaderboardLock while the leaderboard is written.
	LockFile        = ".lock"
	LeaderboardLock = ".leaderboard.lock"
)
