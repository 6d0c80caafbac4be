#!/usr/bin/env bash
# `gandist sweep` as a SLURM job array: array task i trains grid point i of a sweep file.
#
#   gandist sweep configs/sweeps/wgan_digits.yaml --count     # N, the number of points (18)
#   sbatch --array=0-17 slurm/sweep.sh configs/sweeps/wgan_digits.yaml [dotted.override=value ...]
#   sbatch --array=0-17%4 slurm/sweep.sh configs/sweeps/wgan_digits.yaml   # 4 tasks at a time
#   sbatch --array=3,11 slurm/sweep.sh configs/sweeps/wgan_digits.yaml     # redo points 3 and 11
#
# Submit from the repository root: the sweep file and train.output_dir (runs/) are relative to
# the submit directory; the sweep's base config is relative to the sweep file. Every task
# checks the whole grid before training, so a typo fails every task within seconds.
#
# Each task runs `gandist sweep <file> train.resume=auto [overrides] --index $SLURM_ARRAY_TASK_ID`
# as one process (one GPU) into runs/<sweep>-<iii>-<key=value,...> (W&B group <sweep>).
# train.resume=auto makes a requeued task continue its own run, and a resubmitted finished
# point end at once. For several processes per point, use slurm/train.sh with the overrides
# that `gandist sweep <file> --index I --dry-run` prints.
#
# Signals (as slurm/train.sh): SIGUSR1 (--signal=B:USR1@<s> before the time limit, or
# `scancel --signal=USR1 --batch <job>_<i>`): checkpoint, then `scontrol requeue` the task, which
# resumes. SIGTERM (scancel, preemption): checkpoint and stop (exit 75). SIGUSR2: checkpoint
# and stop, exit 0. Exit: 0 completed (or requeued), 75 stopped with a checkpoint, 1 failed,
# 2 bad usage or a bad sweep file.
#
# Variables (all optional; sbatch passes the submitting shell's environment to the job):
#   GANDIST_RUNTIME          venv (default) | apptainer
#   GANDIST_VENV             venv mode: the virtual environment (default: <repo>/.venv if it
#                            exists, else the python3 on PATH)
#   GANDIST_IMAGE            apptainer mode: the image (.sif file or docker://... URI); required
#   GANDIST_APPTAINER        apptainer mode: the binary (default: apptainer, else singularity)
#   GANDIST_APPTAINER_ARGS   apptainer mode: extra `exec` options, split on spaces; --nv is
#                            always passed
#   GANDIST_OVERRIDES        more dotted overrides, split on spaces, after the arguments
#   GANDIST_WANDB_MODE       tracking.wandb: auto | online | offline | disabled
#   GANDIST_WANDB_KEY_FILE   a file holding the W&B key, read at task start
#   GANDIST_MAX_REQUEUES     stop requeueing a task after this many restarts (default 50)
#   GANDIST_REQUEUE_ON_TERM  1: requeue after SIGTERM too (clusters with PreemptMode=CANCEL)
#   GANDIST_HOME             the gandist checkout (default: found from the submitted script path)
#
#SBATCH --job-name=gandist-sweep
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%x-%A_%a.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
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
[ $# -ge 1 ] || die "usage: sbatch --array=0-<N-1> slurm/sweep.sh <sweep.yaml> [overrides]"
SWEEP=$1
shift

# ---------------------------------------------------------------- runtime: venv or container

setup_runtime gpu
# (In apptainer mode the sweep file may be a path inside the image.)
if [ "$RUNTIME" = venv ] && [ ! -f "$SWEEP" ]; then
  die "sweep file not found: $SWEEP (relative to $(pwd))"
fi

# ---------------------------------------------------------------- which point

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  N=$("${PY[@]}" -m gandist sweep "$SWEEP" --count) || die "cannot read the sweep $SWEEP"
  die "submit as a job array, one task per point: sbatch --array=0-$(( N - 1 )) slurm/sweep.sh $SWEEP"
fi
INDEX=$SLURM_ARRAY_TASK_ID

OVERRIDES=("train.resume=auto")
add_user_overrides "$@"
read_wandb_key_file

# ---------------------------------------------------------------- signals

# A stop signal (lib.sh: trap_stop_signals) goes to the training process only, as SIGTERM (its
# loader workers ignore it).
stop_child() {
  log "$1: asking point $INDEX to checkpoint and stop"
  kill -TERM "$CHILD_PID" 2>/dev/null || true
}
trap_stop_signals

# ---------------------------------------------------------------- train

log "job ${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID} task $INDEX (restart ${SLURM_RESTART_COUNT:-0})" \
    "on $(hostname -s): sweep $SWEEP point $INDEX"
run_child "${PY[@]}" -m gandist sweep "$SWEEP" "${OVERRIDES[@]}" --index "$INDEX"
RC=$CHILD_RC

# ---------------------------------------------------------------- outcome

if [ "$RC" = 0 ]; then
  log "point $INDEX completed"
  exit 0
fi
if [ "$RC" = 75 ] || [ -n "$STOP_SIGNAL" ]; then  # 75: stopped with a checkpoint
  log "point $INDEX stopped (exit $RC${STOP_SIGNAL:+, after SIG$STOP_SIGNAL})"
  exit_after_stop \
    "requeued task $INDEX (job $SLURM_JOB_ID); it resumes from its latest checkpoint" \
    "scontrol requeue failed (task cancelled?); resubmit with --array=$INDEX to continue" \
    "not requeued; to continue, submit again with --array=$INDEX (train.resume=auto)"
fi
[ "$RC" = 2 ] && { log "point $INDEX: bad sweep file, override or index (above)"; exit 2; }
log "point $INDEX failed with exit code $RC (see above)"
exit 1
