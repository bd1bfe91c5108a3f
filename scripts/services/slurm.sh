#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (munged, slurmctld, slurmd started directly; no systemd). As root.
#   scripts/services/slurm.sh start|stop|status      (idempotent; state in $INITSWEEP_SERVICES_DIR/slurm)
# Writes /etc/slurm/slurm.conf only when absent or written by this script (a real cluster's config is kept).
set -euo pipefail
source "$(dirname "$0")/common.sh"
DIR=$STATE/slurm
CONF=/etc/slurm/slurm.conf
MARK="# initsweep single-node cluster"
HOST=$(hostname -s)
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 8 / 10 ))  # MB; RealMemory must be set or mem_gb fails
  mkdir -p /etc/slurm "$DIR/ctld" "$DIR/d"
  cat > "$CONF" <<CONF
$MARK (scripts/services/slurm.sh); facts: issue 12
ClusterName=initsweep
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus / 2 ))
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

case "${1:-start}" in
start)
  ensure_packages slurmctld slurmctld slurmd slurm-client munge
  if [ ! -f "$CONF" ] || grep -q "^$MARK" "$CONF"; then write_conf; fi
  mkdir -p "$DIR/ctld" "$DIR/d" /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null;
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
  alive "$DIR/slurmctld.pid" || slurmctld
  alive "$DIR/slurmd.pid" || slurmd
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle*|mixed*|allocated*) echo "SLURM up: node $HOST $state"; exit 0 ;; esac
    sleep 0.5
  done
  echo "slurm.sh: the node did not become idle (state '$state'); see $DIR/slurmctld.log" >&2; exit 1
  ;;
stop)
  if alive "$DIR/slurmctld.pid"; then scontrol shutdown >/dev/null 2>&1 || true; fi
  for f in "$DIR/slurmctld.pid" "$DIR/slurmd.pid" /run/munge/munged.pid; do
    for _ in $(seq 1 20); do alive "$f" || break; [ "$f" = /run/munge/munged.pid ] && kill "$(cat "$f")"; sleep 0.25; done
    if alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  echo "SLURM stopped"
  ;;
status) sinfo -h -o "%N %T" || exit 1 ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
