#!/usr/bin/env bash
# A single-node Slurm on localhost for segfpn's cluster tests (Debian packages, run as root).
#   tests/slurm/local_slurm.sh start DIR   installs slurmctld/slurmd/munge if needed, writes DIR/slurm.conf, starts them
#   tests/slurm/local_slurm.sh stop DIR    stops the daemons started for DIR
# Clients need SLURM_CONF=DIR/slurm.conf.
set -euo pipefail
action=${1:?start|stop}
dir=$(realpath -m "${2:?state directory}")
host=$(hostname -s)

install_packages() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  install_packages
  mkdir -p "$dir"/{state,spool}
  # Ports and job ids of their own, so that a cluster left over from an interrupted run (or another checkout's
  # test run) is neither reached by this one's clients nor in the way of its daemons and of Lightning's DDP port
  # (15000 + the last 4 digits of the job id under Slurm)
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  cat > "$dir/slurm.conf" <<CONF
ClusterName=segfpn-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
FirstJobId=$((RANDOM % 9000 + 1000))
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
SchedulerParameters=sched_interval=5,bf_interval=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$dir/slurm.conf"
  slurmd -f "$dir/slurm.conf"
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx "idle"; then echo "slurm up: $(sinfo -V)"; return 0; fi
    sleep 0.5
  done
  echo "slurm did not come up; logs in $dir" >&2
  tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log >&2 || true
  return 1
}

stop() {
  # cancel what is still queued or running (a hung job would keep its ranks, and their port, alive), then the daemons
  if [ -f "$dir/slurm.conf" ]; then
    export SLURM_CONF="$dir/slurm.conf"
    scancel --quiet --user=root 2>/dev/null || true
    for _ in $(seq 20); do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}

"$action"
