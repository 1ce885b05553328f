#!/usr/bin/env bash
# Stop the CI Slurm cluster started by ci/slurm/up.sh: cancel its jobs, then end exactly the
# daemons recorded in $LATTHERM_SLURM_DIR/run/pids (default /tmp/lattherm-slurm) and remove the
# /etc/slurm/slurm.conf symlink if up.sh made it. Other processes are left alone; the state
# directory is kept (logs, database) unless --purge is given.
set -uo pipefail

S=${LATTHERM_SLURM_DIR:-/tmp/lattherm-slurm}
export SLURM_CONF=$S/etc/slurm.conf
log() { echo "[slurm-down $(date +%T)] $*"; }

if [[ ! -s $S/run/pids ]]; then
    log "nothing recorded in $S/run/pids: nothing to stop"
else
    pid_of() { awk -v n="$1" '$1 == n {print $2}' "$S/run/pids"; }
    # Is $2 still the process $1 that up.sh started (and not a recycled pid)?
    ours() { [[ -n ${2:-} && -r /proc/$2/comm && $(cat "/proc/$2/comm") == "$1"* ]]; }

    # Jobs first, while slurmctld and slurmd still run, so that their steps end cleanly.
    if ours slurmctld "$(pid_of slurmctld)" && [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null) ]]; then
        log "cancelling jobs: $(timeout 10 squeue -h -o %i | tr '\n' ' ')"
        timeout 10 scancel --full --user=root 2>/dev/null
        for _ in $(seq 20); do
            [[ -z $(timeout 10 squeue -h -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi

    # Job step daemons of our slurmd that outlived the cancel: those listening on a socket in our
    # SlurmdSpoolDir.
    inodes=$(awk -v d="$S/spool/d/" 'index($NF, d) == 1 {print $7}' /proc/net/unix 2>/dev/null | sort -u)
    if [[ -n $inodes ]]; then
        for p in $(pgrep -x slurmstepd); do
            for fd in /proc/"$p"/fd/*; do
                l=$(readlink "$fd" 2>/dev/null) || continue
                if [[ $l == socket:\[*\] ]] && grep -qx "${l//[^0-9]/}" <<<"$inodes"; then
                    log "killing leftover slurmstepd $p"
                    kill -KILL "$p" 2>/dev/null
                    break
                fi
            done
        done
    fi

    # Daemons in reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        pid=$(pid_of "$name")
        if ! ours "$name" "$pid"; then
            [[ -n $pid ]] && log "$name (pid $pid) is not running"
            continue
        fi
        kill -TERM "$pid"
        for _ in $(seq 60); do
            ours "$name" "$pid" || break
            sleep 0.5
        done
        if ours "$name" "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid"
            sleep 0.5
        fi
        log "$name (pid $pid) stopped"
    done
    : >"$S/run/pids"
fi

if [[ -f $S/run/links ]]; then
    while read -r link; do
        [[ -L $link && $(readlink "$link") == "$S/etc/slurm.conf" ]] && rm -f "$link" && log "removed $link"
    done <"$S/run/links"
    rm -f "$S/run/links"
fi

if [[ ${1:-} == --purge ]]; then
    rm -rf "$S" && log "removed $S"
fi
