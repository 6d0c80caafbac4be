#!/usr/bin/env bash
# Stop the daemons .ci/slurm_up.sh started: by their pid files only, never by name, so nothing
# else on the machine is touched. Jobs still running are cancelled first so that slurmd does not
# leave orphaned steps behind. Idempotent. Pass --purge to also delete the state directory
# (queued jobs, logs).
#
# Variables:
#   GANDIST_SLURM_STATE  the directory slurm_up.sh used  (default /tmp/gandist-slurm)
set -euo pipefail

STATE=${GANDIST_SLURM_STATE:-/tmp/gandist-slurm}

stop_pidfile() {
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "slurm_down.sh: pid $pid ($1) still running after 10 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
  mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
  if [ "${#jobs[@]}" -gt 0 ]; then
    scancel --quiet "${jobs[@]}" || true
  fi
  for _ in $(seq 50); do
    [ -z "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
stop_pidfile "$STATE/slurmd.pid"
stop_pidfile "$STATE/slurmctld.pid"
stop_pidfile /run/munge/munged.pid

if [ "${1:-}" = "--purge" ]; then
  rm -rf "$STATE"
fi
echo "slurm_down.sh: stopped"
