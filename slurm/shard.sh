#!/usr/bin/env bash
# `gandist shard` as a SLURM job array: task k of n writes the shards i with i % n == k into one
# shared output directory; the last task to finish writes the dataset.json manifest.
#
#   sbatch --array=0-7 slurm/shard.sh <source> <out_dir> [gandist shard options ...]
#   sbatch --array=0-15 --cpus-per-task=4 slurm/shard.sh folder:/data/faces shards/faces \
#          --image-size 64 --shard-bytes 256MB
#
# <out_dir> must be on a filesystem every node sees (with working flock, e.g. NFSv4, Lustre,
# GPFS). Submit from the repository root: relative paths are relative to the submit directory.
#
# Why this is safe: shard i always holds source samples [i*S, (i+1)*S), so every task computes
# the same plan and the tasks never write the same file. Each task removes the manifest before
# touching a shard; a task that finds every shard complete writes the manifest under a lock
# (gandist.data.shards.write.write_shards(part=(k, n))). The result is byte-identical to one
# `gandist shard` run with the same options. Everything is resumable: a re-run (of the whole
# array, or of a failed task) reuses complete shards. Run one array per directory at a time.
#
# Time limit: --signal=B:USR1 makes the task requeue itself before the limit; the requeued task
# keeps the shards it completed and writes the rest.
#
# Variables (all optional; sbatch passes the submitting shell's environment to the job):
#   GANDIST_SHARD_PARTS     n, the number of parts (default: the array's task count). Set it
#                           to rerun single tasks: GANDIST_SHARD_PARTS=8 sbatch --array=3 ...
#                           (then the part is the array task id itself)
#   GANDIST_RUNTIME         venv (default) | apptainer
#   GANDIST_VENV            venv mode: the virtual environment (default: <repo>/.venv if it
#                           exists, else the python3 on PATH)
#   GANDIST_IMAGE           apptainer mode: the image; required
#   GANDIST_APPTAINER       apptainer mode: the binary (default: apptainer, else singularity)
#   GANDIST_APPTAINER_ARGS  apptainer mode: extra `exec` options, split on spaces
#   GANDIST_HOME            the gandist checkout (default: found from the submitted script path)
# --workers defaults to $SLURM_CPUS_PER_TASK (a --workers option given here wins).
#
#SBATCH --job-name=gandist-shard
#SBATCH --array=0-3
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%x-%A_%a.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@60
#SBATCH --requeue
set -euo pipefail
# A stop signal before lib.sh's traps are set would end this shell (bash's default for SIGUSR1):
# recorded here, acted on by trap_stop_signals.
gandist_early_stop=${gandist_early_stop:-}
trap 'gandist_early_stop=${gandist_early_stop:-USR1}' USR1
trap 'gandist_early_stop=${gandist_early_stop:-TERM}' TERM
trap 'gandist_early_stop=USR2' USR2

# ---------------------------------------------------------------- where gandist lives

# sbatch runs a spooled copy of this script, so slurm/lib.sh is found from the submitted path
# (the job's Command), or from $0 when a script is run by path (train_dcgan.sh runs train.sh).
# Keep gandist_home the same in every slurm/*.sh: lib.sh can only be sourced once it has run.
gandist_home() {
  local cmd d p="" w
  local -a words dirs=("$(dirname "$0")")
  cmd=$(scontrol show job "${SLURM_JOB_ID:-none}" 2>/dev/null \
        | sed -n 's/^ *Command=//p' | head -n1)
  # Command= is the submitted path followed by the script's arguments, which may hold slashes
  # too: each leading run of words is a candidate path, shortest first.
  read -r -a words <<<"$cmd" || true
  for w in "${words[@]}"; do
    p=${p:+$p }$w
    dirs+=("$(dirname "$p")")
  done
  for d in "${dirs[@]}"; do
    [ -f "$d/lib.sh" ] && { (cd "$d/.." && pwd); return; }
  done
  printf '%s\n' "${SLURM_SUBMIT_DIR:-$(pwd)}"
}
GANDIST_HOME=${GANDIST_HOME:-$(gandist_home)}
# shellcheck source-path=SCRIPTDIR/.. source=slurm/lib.sh
source "$GANDIST_HOME/slurm/lib.sh" \
  || { echo "gandist-slurm: error: no slurm/lib.sh in GANDIST_HOME=$GANDIST_HOME" >&2; exit 2; }
require_batch_job
[ $# -ge 2 ] || die "usage: sbatch --array=0-<n-1> slurm/shard.sh <source> <out_dir> [options]"

# ---------------------------------------------------------------- which part

if [ -n "${GANDIST_SHARD_PARTS:-}" ]; then
  N=$GANDIST_SHARD_PARTS
  K=${SLURM_ARRAY_TASK_ID:-0}
elif [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  N=$SLURM_ARRAY_TASK_COUNT
  K=$(( SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:?} ))
  # With gaps (--array=0-14:2, 1,5,9) the ids do not number the parts 0..n-1.
  [ $(( ${SLURM_ARRAY_TASK_MAX:?} - SLURM_ARRAY_TASK_MIN + 1 )) = "$N" ] \
    || die "the array ids must be contiguous (e.g. --array=0-7), or set GANDIST_SHARD_PARTS"
else
  N=1  # a plain job: the whole data set
  K=0
fi
if ! [[ "$N" =~ ^[1-9][0-9]*$ && "$K" =~ ^[0-9]+$ ]] || [ "$K" -ge "$N" ]; then
  die "part $K of $N: need 0 <= part < GANDIST_SHARD_PARTS"
fi

# ---------------------------------------------------------------- runtime: venv or container

setup_runtime cpu  # sharding: no --nv

# ---------------------------------------------------------------- time limit: requeue

# The batch shell gets USR1 before the time limit; bash runs the trap only while blocked in
# `wait`, hence the background job (lib.sh: run_child). The writer (its own process group, with
# its pool workers) is stopped first and waited for: processes orphaned by this shell's exit can
# escape SLURM's process tracking (proctrack/linuxproc) and would race the restarted task. Then
# the task is requeued; complete shards are kept, a half-written one is discarded and redone.
# shellcheck disable=SC2317  # reached through the trap
on_usr1() {
  trap '' USR1 TERM
  log "SIGUSR1 (time limit near): stopping part $K of $N and requeueing the task"
  kill -TERM -- "-$CHILD_PID" 2>/dev/null || kill -TERM "$CHILD_PID" 2>/dev/null || true
  wait "$CHILD_PID" 2>/dev/null || true
  scontrol requeue "$SLURM_JOB_ID" || log "scontrol requeue failed; rerun the task to finish"
  exit 0
}
trap on_usr1 USR1

# ---------------------------------------------------------------- shard

# `gandist shard`'s own option parsing and messages, with write_shards given the part.
SHARD_PY='
import functools
import sys

from gandist import cli
from gandist.data.shards import write

k, n = int(sys.argv[1]), int(sys.argv[2])
write.write_shards = functools.partial(write.write_shards, part=(k, n))
sys.exit(cli.main(["shard", *sys.argv[3:]]))
'
log "job ${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID} task ${SLURM_ARRAY_TASK_ID:-0} (restart" \
    "${SLURM_RESTART_COUNT:-0}) on $(hostname -s): part $K of $N, source $1 -> $2"
# setsid: a process group of its own (the writer and its workers), to stop them together.
run_child setsid "${PY[@]}" -c "$SHARD_PY" "$K" "$N" --workers "${SLURM_CPUS_PER_TASK:-1}" "$@"
if [ "$CHILD_RC" = 0 ]; then
  log "part $K of $N done"
else
  log "part $K of $N failed with exit code $CHILD_RC"
fi
exit "$CHILD_RC"
