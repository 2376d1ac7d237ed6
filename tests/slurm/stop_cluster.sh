#!/usr/bin/env bash
# Stop the test cluster that tests/slurm/start_cluster.sh started: only the daemons whose
# PIDs it recorded in $STATE/pids (a PID is signalled only while it still runs the recorded
# program), in reverse start order, after cancelling the jobs still on our slurmctld; then
# the /etc/slurm/slurm.conf link it made. Anything it did not start (a munged that was
# already running, the packages, the state dir with the accounting database) is left as it
# is. Running it twice is harmless.
# Usage: stop_cluster.sh [NAME...]  (names from start_cluster.sh's STARTED= line: mariadb
# munged slurmdbd slurmctld slurmd; default: all it recorded)
set -euo pipefail

STATE=${HELIXFLOW_SLURM_DIR:-/var/tmp/helixflow-slurm}
PIDS=$STATE/pids
export SLURM_CONF=$STATE/etc/slurm.conf
say() { echo "stop_cluster: $*" >&2; }

[[ -d $PIDS ]] || { say "nothing recorded in $PIDS"; exit 0; }
exec 9>"$STATE/lock"
flock -w 300 9 || { say "another start/stop holds $STATE/lock"; exit 1; }

# running NAME COMM: print the recorded PID of NAME while it runs COMM (zombies are not running)
running() {
    local pid state
    [[ -s $PIDS/$1.pid ]] || return 1
    pid=$(<"$PIDS/$1.pid")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$2" ]] || return 1
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]] || return 1
    echo "$pid"
}
ONLY=" $* "
selected() { [[ $ONLY == "  " || $ONLY == *" $1 "* ]]; }
stop() {
    local name=$1 comm=$2 pid i
    selected "$name" || return 0
    if pid=$(running "$name" "$comm"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 240; i++)); do
            running "$name" "$comm" >/dev/null || break
            sleep 0.25
        done
        if running "$name" "$comm" >/dev/null; then
            say "$name (pid $pid) ignored SIGTERM for 60s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

if selected slurmctld && running slurmctld slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        say "cancelling jobs still queued or running: ${jobs//$'\n'/ }"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 120; i++)); do
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
            sleep 0.25
        done
    fi
fi
stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadb mariadbd
stop munged munged
# the link goes with the last daemon of ours
if ! ls "$PIDS"/*.pid >/dev/null 2>&1 && [[ -L /etc/slurm/slurm.conf \
    && $(readlink /etc/slurm/slurm.conf) == "$SLURM_CONF" ]]; then
    rm -f /etc/slurm/slurm.conf
fi
