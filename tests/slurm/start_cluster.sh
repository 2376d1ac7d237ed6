#!/usr/bin/env bash
# Start a one-node SLURM cluster on loopback for the tests (tests/test_slurm.py), as root and
# without systemd or cgroups:
#   MariaDB (own datadir, 127.0.0.1) -> munged (as the munge user) -> slurmdbd -> slurmctld
#   -> slurmd, with a generated slurm.conf + slurmdbd.conf (this host at 127.0.0.1, CPUs and
#   memory from the machine, select/cons_tres, proctrack/linuxproc, task/none, accounting in
#   slurmdbd so that `sacct` works as on a real cluster, one fake GPU as a gres).
#
# Idempotent: a daemon already running (recorded by an earlier call, or for munged any
# answering munged) is left alone. The PIDs of the daemons this script starts are written to
# $STATE/pids/; tests/slurm/stop_cluster.sh stops exactly those and nothing else.
# Installs the Debian packages if they are missing (apt-get, non-interactive).
#
# Exit codes: 0 ready; 3 the packages cannot be installed / not root (callers skip);
# anything else: a daemon did not come up (its log is printed).
# stdout: `SLURM_CONF=<path>` when ready, and last, on any exit, `STARTED=<the daemons this
# call started>` (for `stop_cluster.sh <those>`). /etc/slurm/slurm.conf links to that file
# while the cluster runs, so sinfo, sbatch and sacct work without SLURM_CONF too:
#   eval "export $(tests/slurm/start_cluster.sh | grep ^SLURM_CONF=)"; sinfo; sacct
# Settings (environment): HELIXFLOW_SLURM_DIR (state dir, default /var/tmp/helixflow-slurm),
# HELIXFLOW_SLURM_DB_PORT (MariaDB port on 127.0.0.1, default 16306),
# HELIXFLOW_SLURM_PORTS (slurmctld,slurmd,slurmdbd ports, default 16817,16818,16819).
set -euo pipefail

STATE=${HELIXFLOW_SLURM_DIR:-/var/tmp/helixflow-slurm}
DB_PORT=${HELIXFLOW_SLURM_DB_PORT:-16306}
IFS=, read -r CTLD_PORT SLURMD_PORT DBD_PORT <<<"${HELIXFLOW_SLURM_PORTS:-16817,16818,16819}"
CLUSTER=helixflow
PARTITION=debug
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
ETC=$STATE/etc LOG=$STATE/log PIDS=$STATE/pids SPOOL=$STATE/spool
export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCKET=/run/munge/munge.socket.2
SYS_CONF=/etc/slurm/slurm.conf

say() { echo "start_cluster: $*" >&2; }
unavailable() { say "SLURM unavailable: $*"; exit 3; }
fail() {
    say "ERROR: $1"
    for log in "${@:2}"; do
        [[ -f $log ]] && { say "--- tail of $log"; tail -n 30 "$log" >&2; }
    done
    exit 1
}

# On any exit: drop our policy-rc.d, and name what this call started (also after a failure,
# so that the caller can stop it).
POLICY=/usr/sbin/policy-rc.d made_policy=0 started=()
finish() {
    ((made_policy)) && rm -f "$POLICY"
    echo "STARTED=${started[*]}"
}
trap finish EXIT

[[ $(id -u) -eq 0 ]] || unavailable "needs root (installs Debian packages, runs the daemons)"

# ---------------------------------------------------------------- packages
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || unavailable "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]} (apt-get)"
    # Keep the packages' maintainer scripts from starting the daemons (we start our own).
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold "${missing[@]}" >"/tmp/helixflow-slurm-apt.log" 2>&1
    }
    if ! apt_install; then
        apt-get update -q >>/tmp/helixflow-slurm-apt.log 2>&1 || true
        apt_install || { tail -n 20 /tmp/helixflow-slurm-apt.log >&2
                         unavailable "apt-get could not install ${missing[*]}"; }
    fi
    ((made_policy)) && rm -f "$POLICY" && made_policy=0
fi
for bin in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch \
           sacct sacctmgr; do
    command -v "$bin" >/dev/null || unavailable "$bin not found after installing ${PACKAGES[*]}"
done

# ---------------------------------------------------------------- state, lock
mkdir -p "$ETC" "$LOG" "$PIDS" "$SPOOL/ctld" "$SPOOL/d" "$STATE/mysql-run"
chmod 755 "$STATE"
exec 9>"$STATE/lock"
flock -w 300 9 || fail "another start/stop holds $STATE/lock"

# alive NAME COMM: true when the PID recorded for NAME runs COMM (and is not a zombie)
alive() {
    local pid
    [[ -s $PIDS/$1.pid ]] || return 1
    pid=$(<"$PIDS/$1.pid")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$2" ]] || return 1
    [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}
# launch NAME COMM LOG CMD...: run CMD in its own session, record its PID
launch() {
    local name=$1 comm=$2 log=$3; shift 3
    setsid "$@" </dev/null >>"$log" 2>&1 9>&- &   # 9: the lock, not for daemons
    echo $! >"$PIDS/$name.pid"
    sleep 0.2
    alive "$name" "$comm" || { rm -f "$PIDS/$name.pid"; fail "$name exited at once" "$log"; }
    say "started $name (pid $(<"$PIDS/$name.pid"))"
    started+=("$name")
}
# wait_for WHAT SECONDS LOG CMD...: poll CMD until it succeeds
wait_for() {
    local what=$1 secs=$2 log=$3 i; shift 3
    for ((i = 0; i < secs * 4; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    fail "$what not ready after ${secs}s" "$log"
}

# ---------------------------------------------------------------- configuration
node=$(hostname -s)
read -r cpus boards sockets cores threads < <(slurmd -C 2>/dev/null | sed -n 1p | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["CPUs"], v["Boards"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"] }')
[[ -n ${cpus:-} ]] || { cpus=$(nproc); boards=1; sockets=1; cores=$cpus; threads=1; }
mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
real_mb=$((mem_mb * 95 / 100))   # slightly under: a node reporting less than this drains
topology="CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores"
topology+=" ThreadsPerCore=$threads"

if [[ ! -s $ETC/dbpass ]]; then
    (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$ETC/dbpass")
fi
dbpass=$(<"$ETC/dbpass")

new_conf=$(cat <<CONF
# Generated by tests/slurm/start_cluster.sh: a one-node test cluster on loopback.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups in the sandbox: track processes through /proc, no task containment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
# Accounting through slurmdbd (MariaDB): sacct answers as on a real cluster. job_comment
# keeps sbatch --comment (the SLURM plugin puts rule_<name>_wildcards_<...> there).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
# One (fake) GPU, so that a rule's gpu resource is a real GPU request (sbatch --gpus=1):
# SLURM allocates it and sets CUDA_VISIBLE_DEVICES, while torch (the CPU build) sees none.
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node $topology RealMemory=$real_mb Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
)
new_dbd_conf=$(cat <<CONF
# Generated by tests/slurm/start_cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdAddr=127.0.0.1
DbdHost=$node
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$dbpass
StorageLoc=slurm_acct_db
CONF
)
write_conf() {  # PATH TEXT: replace only when changed and no daemon of ours runs
    if [[ -f $1 && $(<"$1") == "$2" ]]; then return; fi
    if alive slurmctld slurmctld || alive slurmd slurmd || alive slurmdbd slurmdbd; then
        say "WARNING: $1 would change but the daemons run; keeping it (stop_cluster.sh first)"
        return
    fi
    (umask 077; printf '%s\n' "$2" >"$1")
}
# The GPU's device file: a character device with NVIDIA's major number, which nothing opens.
GPU_DEV=$STATE/dev/nvidia0
if [[ ! -c $GPU_DEV ]]; then
    mkdir -p "$STATE/dev" && rm -f "$GPU_DEV"
    mknod -m 666 "$GPU_DEV" c 195 0 2>/dev/null || ln -s /dev/null "$GPU_DEV"
fi
new_gres_conf=$(cat <<CONF
# Generated by tests/slurm/start_cluster.sh: one fake GPU (no NVML autodetection).
AutoDetect=off
NodeName=$node Name=gpu File=$GPU_DEV
CONF
)
write_conf "$ETC/slurm.conf" "$new_conf"
write_conf "$ETC/gres.conf" "$new_gres_conf"
write_conf "$ETC/slurmdbd.conf" "$new_dbd_conf"
chmod 644 "$ETC/slurm.conf" "$ETC/gres.conf"; chmod 600 "$ETC/slurmdbd.conf"
# The daemons and our commands use SLURM_CONF, but the SLURM plugin's job step strips SLURM_*
# from the environment of its `srun`, which then reads the default /etc/slurm/slurm.conf (as
# on a real cluster). Link it to ours; stop_cluster.sh removes the link again.
if [[ -L $SYS_CONF && $(readlink "$SYS_CONF") == "$SLURM_CONF" ]]; then :
elif [[ -e $SYS_CONF || -L $SYS_CONF ]]; then
    fail "$SYS_CONF exists and is not ours: this machine has its own SLURM configuration"
else
    mkdir -p "$(dirname "$SYS_CONF")" && ln -s "$SLURM_CONF" "$SYS_CONF"
fi

# ---------------------------------------------------------------- MariaDB
DB=$STATE/mysql DB_SOCKET=$STATE/mysql-run/mysqld.sock
chown mysql:mysql "$STATE/mysql-run"
if ! alive mariadb mariadbd; then
    if [[ ! -d $DB/mysql ]]; then
        say "initialising MariaDB in $DB"
        mkdir -p "$DB" && chown mysql:mysql "$DB"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
            || fail "mariadb-install-db failed" "$LOG/mariadb-install.log"
    fi
    launch mariadb mariadbd "$LOG/mariadb.out" mariadbd --no-defaults --user=mysql \
        --datadir="$DB" --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$STATE/mysql-run/mariadbd.pid" --log-error="$LOG/mariadb.log" \
        --skip-name-resolve --innodb-use-native-aio=0 --innodb-buffer-pool-size=256M \
        --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
fi
wait_for MariaDB 60 "$LOG/mariadb.log" mariadb-admin --no-defaults -S "$DB_SOCKET" -u root ping
mariadb --no-defaults -S "$DB_SOCKET" -u root <<SQL \
    || fail "could not create the slurm database user" "$LOG/mariadb.log"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$dbpass';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$dbpass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ---------------------------------------------------------------- munged (not as root)
munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }
if ! alive munged munged && ! munge_ok >/dev/null 2>&1; then
    install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    launch munged munged "$LOG/munged.out" setpriv --reuid=munge --regid=munge --init-groups \
        munged -F --socket="$MUNGE_SOCKET"   # logs to /var/log/munge/munged.log
fi
wait_for munged 30 "$LOG/munged.out" munge_ok

# ---------------------------------------------------------------- slurmdbd
if ! alive slurmdbd slurmdbd; then
    launch slurmdbd slurmdbd "$LOG/slurmdbd.out" slurmdbd -D
fi
wait_for slurmdbd 90 "$LOG/slurmdbd.log" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster failed" \
        "$LOG/slurmdbd.log"
fi

# ---------------------------------------------------------------- slurmctld, slurmd
if ! alive slurmctld slurmctld; then
    launch slurmctld slurmctld "$LOG/slurmctld.out" slurmctld -D
fi
wait_for slurmctld 60 "$LOG/slurmctld.log" scontrol ping
if ! alive slurmd slurmd; then
    launch slurmd slurmd "$LOG/slurmd.out" slurmd -D -N "$node"
fi
node_idle() { sinfo -h -n "$node" -o %t | grep -Eq '^(idle|mix|alloc)'; }
for ((i = 0; i < 240; i++)); do
    node_idle && break
    if sinfo -h -n "$node" -o %t | grep -Eq '^(down|drain)'; then
        scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    fi
    sleep 0.25
done
node_idle || fail "node $node not idle: $(sinfo -h -n "$node" -o '%t %E')" "$LOG/slurmd.log" \
    "$LOG/slurmctld.log"
sacct_ok() {
    local out
    out=$(sacct -n -X -o JobID --starttime now-1hour 2>&1) && ! grep -qi disabled <<<"$out"
}
wait_for sacct 60 "$LOG/slurmctld.log" sacct_ok
say "ready: node $node ($cpus CPUs, ${real_mb} MB), partition $PARTITION, accounting via slurmdbd"
echo "SLURM_CONF=$SLURM_CONF"
