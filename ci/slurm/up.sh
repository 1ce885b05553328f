#!/usr/bin/env bash
# Bring up a single-node Slurm cluster on localhost for CI (Debian 12, as root, no systemd needed):
# munged, MariaDB, slurmdbd (so that sacct works), slurmctld and slurmd with two fake GPUs.
#
#   ci/slurm/up.sh     # installs slurm-wlm, slurmdbd, munge, mariadb-server if missing; prints
#                      # "export SLURM_CONF=..." on its last line
#   ci/slurm/down.sh   # stops exactly the daemons this script started
#
# Everything lives in the state directory $LATTHERM_SLURM_DIR (default /tmp/lattherm-slurm):
# etc/ (slurm.conf, slurmdbd.conf, gres.conf), log/, spool/, mysql/, munge/, dev/ (fake GPUs) and
# run/pids ("name pid" per daemon, read by down.sh). Ports can be moved with LATTHERM_SLURM_PORT
# (slurmctld; slurmd = +1, slurmdbd = +2, default 6817) and LATTHERM_SLURM_DB_PORT (MariaDB, 33306).
# Clients need SLURM_CONF=$LATTHERM_SLURM_DIR/etc/slurm.conf; if /etc/slurm/slurm.conf does not
# exist, a symlink to it is made there too (removed by down.sh), so that jobs, whose SLURM_*
# variables the Snakemake executor plugin strips, still find the cluster.
# Cluster "lattherm", account "lattherm" (user root), QOS "normal" and "regular", partition "debug",
# node "localhost" with Feature=cpu,gpu and Gres=gpu:2.
set -euo pipefail

S=${LATTHERM_SLURM_DIR:-/tmp/lattherm-slurm}
CTLD_PORT=${LATTHERM_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=${LATTHERM_SLURM_DB_PORT:-33306}
HERE=$(cd "$(dirname "$0")" && pwd)
export SLURM_CONF=$S/etc/slurm.conf

log() { echo "[slurm-up $(date +%T)] $*"; }
die() { echo "[slurm-up] ERROR: $*" >&2; exit 1; }
alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Wait up to $1 seconds for the command "$2..." to succeed (each try limited to 10 s).
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    while ((SECONDS < deadline)); do
        if timeout 10 "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

[[ $(id -u) == 0 ]] || die "run as root (the daemons run as root in this CI set-up)"

# --- already up? ---------------------------------------------------------------------------------
if [[ -s $S/run/pids ]]; then
    all_alive=1
    while read -r name pid; do alive "$pid" || all_alive=0; done <"$S/run/pids"
    if ((all_alive)) && timeout 10 sinfo -h >/dev/null 2>&1; then
        log "already up (state in $S; daemons: $(tr '\n' ' ' <"$S/run/pids"))"
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    log "stale or partial cluster in $S: stopping what is left first"
    "$HERE/down.sh"
fi

# --- packages ------------------------------------------------------------------------------------
need=()
for exe in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client slurmdbd:slurmdbd munged:munge \
    mariadbd:mariadb-server; do
    command -v "${exe%%:*}" >/dev/null 2>&1 || need+=("${exe#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]} (apt)"
    # Keep the packages' init scripts from starting system-wide daemons: this script starts its own.
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm slurm-client slurmdbd munge mariadb-server >/dev/null
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi

# --- state directory and configs -----------------------------------------------------------------
mkdir -p "$S"/{etc,log,run,spool/ctld,spool/d,dev,munge,mysql}
chmod 755 "$S"
chmod 700 "$S/munge"
: >"$S/run/pids"

# The node as slurmd sees this machine (CPUs, sockets, cores, memory), renamed to localhost.
node_hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_hw")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_hw")
[[ -n $cpus && -n $mem ]] || die "could not read CPUs/RealMemory from 'slurmd -C': $node_hw"

# Two fake GPUs: character devices (/dev/null's numbers) that gres.conf can point at.
for i in 0 1; do
    [[ -c $S/dev/gpu$i ]] || mknod "$S/dev/gpu$i" c 1 3
done

sed -e "s|@S@|$S|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@NODE_HW@|$node_hw|g" \
    -e "s|@DEF_MEM_PER_CPU@|$((mem / cpus))|g" "$HERE/slurm.conf.in" >"$S/etc/slurm.conf"
sed -e "s|@S@|$S|g" "$HERE/gres.conf.in" >"$S/etc/gres.conf"
sed -e "s|@S@|$S|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
    "$HERE/slurmdbd.conf.in" >"$S/etc/slurmdbd.conf"
chmod 600 "$S/etc/slurmdbd.conf"  # slurmdbd insists (it holds the database password)
printf 'ConstrainCores=no\n' >"$S/etc/cgroup.conf"

if [[ ! -e /etc/slurm/slurm.conf ]]; then
    mkdir -p /etc/slurm
    ln -s "$S/etc/slurm.conf" /etc/slurm/slurm.conf
    echo /etc/slurm/slurm.conf >"$S/run/links"
fi

record() { echo "$1 $2" >>"$S/run/pids"; log "$1 started (pid $2)"; }

# Start "$name" in the background, in its own session, logging to log/$name.out; sets $started.
start() {
    local name=$1; shift
    setsid "$@" >"$S/log/$name.out" 2>&1 </dev/null &
    started=$!
}

# --- munge -----------------------------------------------------------------------------------------
if [[ ! -f $S/munge/munge.key ]]; then
    dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$S/munge/munge.key"
fi
rm -f "$S/munge/munged.pid"
munged --force --key-file="$S/munge/munge.key" --socket="$S/munge/munge.socket" \
    --pid-file="$S/munge/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed"
wait_for 10 test -s "$S/munge/munged.pid" || die "munged did not start (see $S/log/munged.log)"
record munged "$(cat "$S/munge/munged.pid")"

# --- MariaDB (accounting database) ---------------------------------------------------------------
if [[ ! -d $S/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$S/mysql" --user=root --auth-root-authentication-method=socket \
        --skip-test-db >"$S/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $S/log/mariadb-install.log)"
fi
start mariadbd mariadbd --no-defaults --datadir="$S/mysql" --socket="$S/run/mysqld.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$S/run/mariadbd.pid" --user=root --log-error="$S/log/mariadbd.log" \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --skip-log-bin
record mariadbd "$started"
wait_for 60 mariadb --no-defaults -S "$S/run/mysqld.sock" -u root -e 'SELECT 1' \
    || die "MariaDB did not come up (see $S/log/mariadbd.log)"
mariadb --no-defaults -S "$S/run/mysqld.sock" -u root <<'SQL'
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'lattherm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'lattherm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- slurmdbd, then the cluster, account and QOS, then the controller and the node ---------------
start slurmdbd slurmdbd -D
record slurmdbd "$started"
wait_for 60 sacctmgr -n show cluster || die "slurmdbd did not come up (see $S/log/slurmdbd.log)"
timeout 20 sacctmgr -i add cluster lattherm >/dev/null 2>&1 || true
timeout 20 sacctmgr -i add qos regular >/dev/null 2>&1 || true
timeout 20 sacctmgr -i add account lattherm cluster=lattherm description=CI organization=lattherm >/dev/null 2>&1 || true
timeout 20 sacctmgr -i modify account lattherm set qos=normal,regular >/dev/null 2>&1 || true
timeout 20 sacctmgr -i add user root account=lattherm cluster=lattherm defaultaccount=lattherm >/dev/null 2>&1 || true
timeout 20 sacctmgr -n -P show assoc where user=root account=lattherm format=account | grep -qx lattherm \
    || die "could not create the account lattherm for root (sacctmgr; see $S/log/slurmdbd.log)"

start slurmctld slurmctld -D
record slurmctld "$started"
wait_for 60 scontrol ping || die "slurmctld did not come up (see $S/log/slurmctld.log)"
start slurmd slurmd -D -N localhost
record slurmd "$started"

node_ready() { [[ $(sinfo -h -n localhost -o %t) =~ ^(idle|mix|alloc)$ ]]; }
if ! wait_for 60 bash -c "$(declare -f node_ready); node_ready"; then
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    wait_for 20 bash -c "$(declare -f node_ready); node_ready" || die "node localhost not ready: $(sinfo -h -N -o '%N %t %E'); see $S/log/slurmd.log"
fi
for name in munged mariadbd slurmdbd slurmctld slurmd; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$S/run/pids")
    alive "$pid" || die "$name (pid $pid) died; see $S/log/$name*"
done
log "up: $(sinfo -h -N -o '%N %t cpus=%c mem=%m gres=%G features=%f') (state in $S)"
echo "export SLURM_CONF=$SLURM_CONF"
