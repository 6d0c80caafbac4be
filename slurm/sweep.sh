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

log() { printf 'gandist-slurm [%s]: %s\n' "$(date +%T)" "$*"; }
die() { printf 'gandist-slurm: error: %s\n' "$*" >&2; exit 2; }

[ -n "${SLURM_JOB_ID:-}" ] || die "submit with sbatch (SLURM_JOB_ID is not set)"
[ $# -ge 1 ] || die "usage: sbatch --array=0-<N-1> slurm/sweep.sh <sweep.yaml> [overrides]"
SWEEP=$1
shift

# ---------------------------------------------------------------- runtime: venv or container

gandist_home() {  # $0 is slurmd's spooled copy; the submitted path is the job's Command
  local cmd
  cmd=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=//p' | head -n1)
  if [ -n "$cmd" ] && [ -f "$(dirname "$cmd")/../pyproject.toml" ]; then
    (cd "$(dirname "$cmd")/.." && pwd)
  else
    printf '%s\n' "${SLURM_SUBMIT_DIR:-$(pwd)}"
  fi
}
GANDIST_HOME=${GANDIST_HOME:-$(gandist_home)}

case "${GANDIST_RUNTIME:-venv}" in
  venv)
    VENV=${GANDIST_VENV:-}
    if [ -z "$VENV" ] && [ -x "$GANDIST_HOME/.venv/bin/python" ]; then
      VENV=$GANDIST_HOME/.venv
    fi
    if [ -n "$VENV" ]; then
      [ -x "$VENV/bin/python" ] || die "GANDIST_VENV=$VENV has no bin/python"
      PY=("$VENV/bin/python")
    else
      PY=(python3)
    fi
    [ -f "$SWEEP" ] || die "sweep file not found: $SWEEP (relative to $(pwd))"
    ;;
  apptainer)
    [ -n "${GANDIST_IMAGE:-}" ] || die "GANDIST_RUNTIME=apptainer needs GANDIST_IMAGE"
    APPTAINER=${GANDIST_APPTAINER:-$(command -v apptainer || command -v singularity || true)}
    [ -n "$APPTAINER" ] || die "neither apptainer nor singularity is on PATH"
    read -r -a EXTRA <<<"${GANDIST_APPTAINER_ARGS:-}"
    PY=("$APPTAINER" exec --nv "${EXTRA[@]}" "$GANDIST_IMAGE" python)
    ;;
  *) die "GANDIST_RUNTIME must be venv or apptainer, not '${GANDIST_RUNTIME}'" ;;
esac

# ---------------------------------------------------------------- which point

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  N=$("${PY[@]}" -m gandist sweep "$SWEEP" --count) || die "cannot read the sweep $SWEEP"
  die "submit as a job array, one task per point: sbatch --array=0-$(( N - 1 )) slurm/sweep.sh $SWEEP"
fi
INDEX=$SLURM_ARRAY_TASK_ID

read -r -a ENV_OVERRIDES <<<"${GANDIST_OVERRIDES:-}"
OVERRIDES=("train.resume=auto")
if [ -n "${GANDIST_WANDB_MODE:-}" ]; then
  OVERRIDES+=("tracking.wandb=$GANDIST_WANDB_MODE")
fi
OVERRIDES+=("$@" "${ENV_OVERRIDES[@]}")

if [ -n "${GANDIST_WANDB_KEY_FILE:-}" ]; then
  [ -r "$GANDIST_WANDB_KEY_FILE" ] || die "cannot read GANDIST_WANDB_KEY_FILE=$GANDIST_WANDB_KEY_FILE"
  WANDB_API_KEY=$(tr -d '[:space:]' <"$GANDIST_WANDB_KEY_FILE")
  export WANDB_API_KEY
fi

# ---------------------------------------------------------------- signals

# The batch shell is what --signal=B:USR1 reaches, and bash runs a trap only between commands
# or while blocked in `wait`: so the point trains in the background and this shell waits. The
# stop request goes to the training process only (SIGTERM; its loader workers ignore it).
STOP_SIGNAL=""
REQUEUE_ON_STOP=0
PID=""
# shellcheck disable=SC2317  # reached through the traps
forward_stop() {
  case "$1" in  # the first signal decides, except that USR2 (stop for good) always wins
    USR1) [ -n "$STOP_SIGNAL" ] || REQUEUE_ON_STOP=1 ;;
    TERM) [ -n "$STOP_SIGNAL" ] || REQUEUE_ON_STOP=${GANDIST_REQUEUE_ON_TERM:-0} ;;
    USR2) REQUEUE_ON_STOP=0 ;;
  esac
  [ -n "$STOP_SIGNAL" ] && return 0
  STOP_SIGNAL=$1
  [ -n "$PID" ] || return 0  # not started yet: forwarded right after the start
  log "SIG$1: asking point $INDEX to checkpoint and stop"
  kill -TERM "$PID" 2>/dev/null || true
}
trap 'forward_stop USR1' USR1
trap 'forward_stop TERM' TERM
trap 'forward_stop USR2' USR2

# ---------------------------------------------------------------- train

log "job ${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID} task $INDEX (restart ${SLURM_RESTART_COUNT:-0})" \
    "on $(hostname -s): sweep $SWEEP point $INDEX"
export PYTHONUNBUFFERED=1
"${PY[@]}" -m gandist sweep "$SWEEP" "${OVERRIDES[@]}" --index "$INDEX" &
PID=$!
if [ -n "$STOP_SIGNAL" ]; then
  log "SIG$STOP_SIGNAL during start-up: asking point $INDEX to checkpoint and stop"
  kill -TERM "$PID" 2>/dev/null || true
fi
RC=0
while :; do  # `wait` returns early (> 128) whenever a trapped signal arrives
  RC=0
  wait "$PID" || RC=$?
  if [ "$RC" -gt 128 ] && kill -0 "$PID" 2>/dev/null; then
    continue
  fi
  break
done

# ---------------------------------------------------------------- outcome

requeue() {
  local restarts=${SLURM_RESTART_COUNT:-0}
  if [ "$restarts" -ge "${GANDIST_MAX_REQUEUES:-50}" ]; then
    log "not requeueing: already restarted $restarts times (GANDIST_MAX_REQUEUES)"
    exit 75
  fi
  trap '' USR1 USR2 TERM  # requeueing ends this task (SIGTERM to this shell)
  if scontrol requeue "$SLURM_JOB_ID"; then
    log "requeued task $INDEX (job $SLURM_JOB_ID); it resumes from its latest checkpoint"
    exit 0
  fi
  log "scontrol requeue failed (task cancelled?); resubmit with --array=$INDEX to continue"
  exit 75
}

if [ "$RC" = 0 ]; then
  log "point $INDEX completed"
  exit 0
fi
if [ "$RC" = 75 ] || [ -n "$STOP_SIGNAL" ]; then  # 75: stopped with a checkpoint
  log "point $INDEX stopped (exit $RC${STOP_SIGNAL:+, after SIG$STOP_SIGNAL})"
  [ "$REQUEUE_ON_STOP" = 1 ] && requeue
  log "not requeued; to continue, submit again with --array=$INDEX (train.resume=auto)"
  [ "$STOP_SIGNAL" = USR2 ] && exit 0
  exit 75
fi
[ "$RC" = 2 ] && { log "point $INDEX: bad sweep file, override or index (above)"; exit 2; }
log "point $INDEX failed with exit code $RC (see above)"
exit 1
