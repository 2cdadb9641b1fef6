#!/usr/bin/env bash
# A real single-node SLURM on 127.0.0.1 for the `slurm` tests (tests/cluster/test_slurm.py).
#
# If `sinfo` already reaches a controller, nothing is installed or configured: the script only
# waits for an idle node.  Otherwise (as root on Debian) it installs slurm-wlm and munge, creates
# a munge key when there is none, starts munged, writes a minimal /etc/slurm/slurm.conf for ONE
# node (this machine, all its CPUs, its memory less a margin, partition `debug`), and starts
# slurmctld and slurmd directly (no systemd, no cgroups: proctrack/linuxproc, task/none).
# Safe to run twice.  Exit status 0 only when a node is idle; CI treats a failure as "skip the
# slurm tests" (they skip themselves when no node is idle).
set -euo pipefail

log() { echo "slurm-setup: $*" >&2; }

wait_idle() {  # wait up to $1 s for an idle node; resume a down/drained one once
    local deadline=$((SECONDS + $1)) resumed=0 state
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -N -o '%N %t' 2>/dev/null || true)
        if grep -qE ' (idle|mix|alloc)$' <<<"$state"; then
            log "node ready: $state"
            return 0
        fi
        if ((!resumed)) && grep -qE ' (down|drain|drng|inval)\*?$' <<<"$state"; then
            scontrol update nodename="${state%% *}" state=resume 2>/dev/null || true
            resumed=1
        fi
        sleep 1
    done
    log "no idle node after $1 s: ${state:-sinfo gives nothing}"
    return 1
}

if command -v sinfo >/dev/null 2>&1 && sinfo -h >/dev/null 2>&1; then
    wait_idle 30
    exit
fi

if [[ $(id -u) != 0 ]]; then
    log "sinfo does not work and this is not root: cannot start SLURM"
    exit 1
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get: cannot install slurm-wlm"; exit 1; }
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi

# munge: a key, then the daemon (as the munge user, as its service would)
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
fi
munge -n | unmunge >/dev/null || { log "munged does not answer"; exit 1; }

# slurm.conf: one node, this machine by a name that resolves to 127.0.0.1
node=localhost
host=$(hostname -s)
if getent hosts "$host" | grep -q '^127\.'; then
    node=$host
fi
cpus=$(nproc)
mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
real_mb=$((mem_mb - (mem_mb / 10 > 1024 ? mem_mb / 10 : 1024)))  # 10 % (at least 1 GiB) for the system
install -d -m 0755 /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
conf=/etc/slurm/slurm.conf
new=$(
    cat <<EOF
# written by coron3_dask .ci/slurm-setup.sh: one node on 127.0.0.1, no cgroups, no accounting
ClusterName=coron3ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)
if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$new" ]]; then
    printf '%s\n' "$new" >"$conf"
    log "wrote $conf (node $node, $cpus CPUs, ${real_mb} MB)"
    if pgrep -x slurmctld >/dev/null; then  # daemons of an earlier configuration: restart them
        scontrol shutdown 2>/dev/null || true
        sleep 2
    fi
fi

# daemons: started directly in their daemon mode, unless already running
if ! pgrep -x slurmctld >/dev/null; then
    /usr/sbin/slurmctld
fi
for _ in $(seq 1 30); do
    sinfo -h >/dev/null 2>&1 && break
    sleep 0.5
done
if ! pgrep -x slurmd >/dev/null; then
    /usr/sbin/slurmd -N "$node"
fi
wait_idle 60
