#!/usr/bin/env bash
# Stops the cluster scripts/slurm-up.sh started (slurmd, slurmctld; munged
# too with --all) and cancels what is still queued on it. Safe to run when
# nothing runs.
set -uo pipefail
DIR=${FINETUNE_SLURM_DIR:-${TMPDIR:-/tmp}/finetune-slurm}
CONF=$DIR/slurm.conf
if [ -f "$CONF" ]; then
  SLURM_CONF=$CONF timeout 5 scancel --full --user "$(id -un)" >/dev/null 2>&1 || true
fi
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  fi
done
if [ "${1:-}" = "--all" ] && pgrep -u munge -x munged >/dev/null; then
  kill "$(pgrep -u munge -x munged)" 2>/dev/null || true
fi
echo "slurm-down: stopped" >&2
