#!/usr/bin/env bash
# Start a one-node SLURM cluster (munge + slurmctld + slurmd) for the tests (idempotent; root).
#
#   eval "$(.ci/slurm.sh)"    # exports MATLOOP_TEST_SLURM_CONF, or nothing (tests then skip)
#
# Installs Debian's `slurm-wlm` when run as root and it is missing (MATLOOP_SLURM_NO_INSTALL=1:
# never install). Configuration, state and logs live in MATLOOP_SLURM_DIR; one partition
# `compute` with this machine's cores. Only the `export` line goes to stdout.
set -uo pipefail
DIR=${MATLOOP_SLURM_DIR:-/tmp/matloop-ci-slurm}
log() { echo "[slurm.sh] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "not root: no test SLURM cluster (the SLURM tests will be skipped)"
  exit 0
fi
if ! command -v slurmctld >/dev/null && [ -z "${MATLOOP_SLURM_NO_INSTALL:-}" ] \
    && command -v apt-get >/dev/null; then
  log "installing slurm-wlm (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends slurm-wlm munge; } >&2 || log "apt-get failed"
fi
for bin in munged slurmctld slurmd sbatch scontrol; do
  command -v "$bin" >/dev/null || { log "no $bin; the SLURM tests will be skipped"; exit 0; }
done

mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log
CONF="$DIR/slurm.conf"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat > "$CONF.new" <<EOF
ClusterName=matloopci
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=6917
SlurmdPort=6918
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=compute Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"
export SLURM_CONF="$CONF"

if ! munge -n >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 \
    of=/etc/munge/munge.key 2>/dev/null && chown munge: /etc/munge/munge.key \
    && chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge: /run/munge /var/log/munge /var/lib/munge 2>/dev/null
  runuser -u munge -- munged >&2 || { log "munged failed; SLURM tests skipped"; exit 0; }
fi
if ! scontrol ping 2>/dev/null | grep -q UP; then
  log "starting slurmctld"
  slurmctld >&2 || { log "slurmctld failed (see $DIR/log); SLURM tests skipped"; exit 0; }
fi
if ! [ -s "$DIR/slurmd.pid" ] || ! kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null; then
  log "starting slurmd"
  slurmd >&2 || { log "slurmd failed (see $DIR/log); SLURM tests skipped"; exit 0; }
fi
for _ in $(seq 30); do
  sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix|alloc" && break
  sleep 1
done
if ! sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix|alloc"; then
  log "the node did not come up; SLURM tests skipped"
  exit 0
fi
log "ready: partition compute on $HOST ($CPUS CPUs)"
echo "export MATLOOP_TEST_SLURM_CONF=$CONF"
