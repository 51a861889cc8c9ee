#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the sweep tests and for
# trying `finetune sweep --executor slurm` by hand: installs Debian's
# slurm-wlm and munge when missing, writes slurm.conf under a state folder
# (default ${TMPDIR:-/tmp}/finetune-slurm), starts munged, slurmctld and
# slurmd (no systemd), waits until the node is idle, and prints the line
# that points Slurm's clients at it:
#
#   eval "$(scripts/slurm-up.sh)"      # export SLURM_CONF=...
#   scripts/slurm-down.sh              # stop it again
#
# Idempotent: a cluster that already answers is left running. Needs root
# (apt-get, munge's key, daemons); everything it prints but the export goes
# to stderr.
set -euo pipefail

DIR=${FINETUNE_SLURM_DIR:-${TMPDIR:-/tmp}/finetune-slurm}
CONF=$DIR/slurm.conf
PARTITION=${FINETUNE_SLURM_PARTITION:-debug}
say() { echo "slurm-up: $*" >&2; }
# The daemons must not inherit the caller's descriptors: started under
# `flock FILE scripts/slurm-up.sh`, munged would hold that lock as long as
# it runs.
closefds() {
  local fd
  for fd in $(ls /proc/$BASHPID/fd); do
    if [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
  done
}

if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2
fi

if [ -f "$CONF" ] && SLURM_CONF=$CONF timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  say "already running ($CONF)"
  echo "export SLURM_CONF=$CONF"
  exit 0
fi

# munge: one key, one daemon.
if [ ! -f /etc/munge/munge.key ]; then
  mungekey --create >&2 2>/dev/null || /usr/sbin/mungekey --create >&2
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge -x munged >/dev/null; then
  (closefds; exec runuser -u munge -- /usr/sbin/munged)
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
host=$(hostname -s)
# The node as slurmd sees it (CPUs, sockets, cores, threads, memory), minus
# the UpTime line.
node=$(slurmd -C | head -n1)
# Leave memory for the machine itself: Slurm refuses a node whose
# RealMemory exceeds what it finds.
cat >"$CONF.tmp" <<CONF
ClusterName=finetune
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
MaxArraySize=10001
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.tmp" "$CONF"

export SLURM_CONF=$CONF
(closefds; exec slurmctld -f "$CONF")
(closefds; exec slurmd -f "$CONF")
for i in $(seq 120); do
  state=$(timeout 5 sinfo -h -o %T 2>/dev/null | head -n1 || true)
  case $state in
    idle|mixed|allocated) say "node $host is $state after $((i / 4)) s ($CONF)"; echo "export SLURM_CONF=$CONF"; exit 0 ;;
    down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.25
done
say "the node did not become idle; see $DIR/log/" >&2
exit 1
