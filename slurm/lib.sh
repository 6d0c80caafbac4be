# shellcheck shell=bash
# slurm/lib.sh: what the gandist batch scripts (train.sh, train_dcgan.sh, shard.sh, sweep.sh)
# share, so that each keeps only its own part (#SBATCH header and usage, arguments, the command
# it runs): log/die, the runtime (venv or apptainer), the user's overrides and W&B key file, and
# stop-signal / requeue handling. Sourced, not run: it only defines functions and a few globals,
# and the traps must be set in the batch shell itself, the only process --signal=B:USR1 reaches.
#
# How the scripts find it: sbatch runs a spooled copy of the script (in slurmd's spool
# directory), so this file is not next to $0. Each script therefore first determines
# GANDIST_HOME with its own copy of gandist_home (GANDIST_HOME from the environment, else the
# submitted path that `scontrol show job` gives as Command, else $0 when run by path, else the
# submit directory) and right after that does
#
#   # shellcheck source-path=SCRIPTDIR/.. source=slurm/lib.sh
#   source "$GANDIST_HOME/slurm/lib.sh" || { echo "gandist-slurm: error: ..." >&2; exit 2; }
#
# The scripts run under `set -euo pipefail` and need bash 4.4 or newer (empty arrays under -u).
# Exit codes, in every script: 0 done (or requeued, or stopped by SIGUSR2), 75 stopped with a
# checkpoint and not requeued, 1 failed, 2 bad usage or set-up (die). A script that uses
# trap_stop_signals defines stop_child (below).

log() { printf 'gandist-slurm [%s]: %s\n' "$(date +%T)" "$*"; }
die() { printf 'gandist-slurm: error: %s\n' "$*" >&2; exit 2; }

require_batch_job() {
  [ -n "${SLURM_JOB_ID:-}" ] || die "submit with sbatch (SLURM_JOB_ID is not set)"
}

# ---------------------------------------------------------------- runtime: venv or container

# setup_runtime gpu|cpu: the runtime every command runs in, from GANDIST_RUNTIME (venv, the
# default, or apptainer), GANDIST_VENV, GANDIST_IMAGE, GANDIST_APPTAINER and
# GANDIST_APPTAINER_ARGS; gpu passes --nv to `apptainer exec` (before GANDIST_APPTAINER_ARGS).
# Sets, for the script:
#   RUNTIME         venv | apptainer
#   PY              the python command (an array)
#   RUNTIME_PREFIX  what goes before any other command of the runtime (apptainer exec ... image)
#   RUNTIME_BIN     the directory other commands are in ("<venv>/bin/"), or "" for PATH
# so that a tool of the runtime is ("${RUNTIME_PREFIX[@]}" "${RUNTIME_BIN}tool").
# shellcheck disable=SC2034  # PY and RUNTIME_BIN are for the script
setup_runtime() {
  local venv apptainer extra=() nv=()
  case "$1" in
    gpu) nv=(--nv) ;;
    cpu) ;;
    *) die "setup_runtime: gpu or cpu, not '$1'" ;;
  esac
  RUNTIME=${GANDIST_RUNTIME:-venv}
  RUNTIME_PREFIX=()
  RUNTIME_BIN=""
  case "$RUNTIME" in
    venv)
      venv=${GANDIST_VENV:-}
      if [ -z "$venv" ] && [ -x "$GANDIST_HOME/.venv/bin/python" ]; then
        venv=$GANDIST_HOME/.venv
      fi
      if [ -n "$venv" ]; then
        [ -x "$venv/bin/python" ] || die "GANDIST_VENV=$venv has no bin/python"
        RUNTIME_BIN=$venv/bin/
        PY=("$venv/bin/python")
      else  # an environment activated before sbatch (the job inherits PATH)
        PY=(python3)
      fi
      ;;
    apptainer)
      [ -n "${GANDIST_IMAGE:-}" ] || die "GANDIST_RUNTIME=apptainer needs GANDIST_IMAGE"
      apptainer=${GANDIST_APPTAINER:-$(command -v apptainer || command -v singularity || true)}
      [ -n "$apptainer" ] || die "neither apptainer nor singularity is on PATH"
      read -r -a extra <<<"${GANDIST_APPTAINER_ARGS:-}"
      # --nv: the host's NVIDIA driver inside the container. The container sees the host
      # environment (SLURM_*, WANDB_API_KEY) and, by default, $HOME, /tmp and the working
      # directory.
      RUNTIME_PREFIX=("$apptainer" exec "${nv[@]}" "${extra[@]}" "$GANDIST_IMAGE")
      PY=("${RUNTIME_PREFIX[@]}" python)
      ;;
    *) die "GANDIST_RUNTIME must be venv or apptainer, not '$RUNTIME'" ;;
  esac
  export PYTHONUNBUFFERED=1  # log lines reach the (appended) job log as they happen
}

# ---------------------------------------------------------------- overrides and W&B

# add_user_overrides [override ...]: appends to OVERRIDES (the script's own come first, so the
# user can still change anything: a later override wins) tracking.wandb=$GANDIST_WANDB_MODE if
# set, the arguments, then GANDIST_OVERRIDES split on spaces.
add_user_overrides() {
  local env_overrides=()
  read -r -a env_overrides <<<"${GANDIST_OVERRIDES:-}"
  if [ -n "${GANDIST_WANDB_MODE:-}" ]; then
    OVERRIDES+=("tracking.wandb=$GANDIST_WANDB_MODE")
  fi
  OVERRIDES+=("$@" "${env_overrides[@]}")
}

# GANDIST_WANDB_KEY_FILE, read at job start into WANDB_API_KEY (keeps the key out of the job's
# recorded environment).
read_wandb_key_file() {
  [ -n "${GANDIST_WANDB_KEY_FILE:-}" ] || return 0
  [ -r "$GANDIST_WANDB_KEY_FILE" ] || die "cannot read GANDIST_WANDB_KEY_FILE=$GANDIST_WANDB_KEY_FILE"
  WANDB_API_KEY=$(tr -d '[:space:]' <"$GANDIST_WANDB_KEY_FILE")
  export WANDB_API_KEY
}

# ---------------------------------------------------------------- stop signals and requeue

# The batch shell is the only process --signal=B:USR1 reaches, and bash runs a trap only between
# commands or while blocked in `wait`: so the work runs in the background (run_child) and this
# shell waits for it. trap_stop_signals makes SIGUSR1, SIGTERM and SIGUSR2 a stop request:
#   STOP_SIGNAL      the first of them (USR1, TERM or USR2), "" while none came
#   REQUEUE_ON_STOP  1 after USR1, or after TERM with GANDIST_REQUEUE_ON_TERM=1; USR2 (stop for
#                    good) always makes it 0
# and forwards it once, as soon as the child runs, by calling the script's own
# `stop_child <what happened>` (which asks the work to checkpoint and stop).
STOP_SIGNAL=""
REQUEUE_ON_STOP=0
STOP_FORWARDED=""
CHILD_PID=""
CHILD_RC=0

on_stop_signal() {
  case "$1" in  # the first signal decides, except that USR2 (stop for good) always wins
    USR1) [ -n "$STOP_SIGNAL" ] || REQUEUE_ON_STOP=1 ;;
    TERM) [ -n "$STOP_SIGNAL" ] || REQUEUE_ON_STOP=${GANDIST_REQUEUE_ON_TERM:-0} ;;
    USR2) REQUEUE_ON_STOP=0 ;;
  esac
  [ -n "$STOP_SIGNAL" ] && return 0  # already forwarded, or will be once the child runs
  STOP_SIGNAL=$1
  [ -n "$CHILD_PID" ] || return 0  # not started yet: run_child forwards it
  STOP_FORWARDED=1
  stop_child "SIG$1"
}

trap_stop_signals() {
  trap 'on_stop_signal USR1' USR1
  trap 'on_stop_signal TERM' TERM
  trap 'on_stop_signal USR2' USR2
  # one that came while the script was starting (each script records it from its first line)
  if [ -n "${gandist_early_stop:-}" ]; then
    on_stop_signal "$gandist_early_stop"
  fi
}

# run_child command [arg ...]: runs the command in the background and waits until it has really
# exited (each trapped signal ends one `wait` early, with a status > 128). Sets CHILD_PID and
# CHILD_RC, the command's exit status.
run_child() {
  "$@" &
  CHILD_PID=$!
  if [ -n "$STOP_SIGNAL" ] && [ -z "$STOP_FORWARDED" ]; then  # it came during the start
    STOP_FORWARDED=1
    stop_child "SIG$STOP_SIGNAL during start-up"
  fi
  while :; do
    CHILD_RC=0
    wait "$CHILD_PID" || CHILD_RC=$?
    if [ "$CHILD_RC" -gt 128 ] && kill -0 "$CHILD_PID" 2>/dev/null; then
      continue
    fi
    break
  done
}

# requeue_job <log line when requeued> <log line when `scontrol requeue` fails>: requeues this
# job (array task), which then starts again with SLURM_RESTART_COUNT + 1, and exits 0; exits 75
# after GANDIST_MAX_REQUEUES (default 50) restarts, or when the requeue fails.
requeue_job() {
  local restarts=${SLURM_RESTART_COUNT:-0}
  if [ "$restarts" -ge "${GANDIST_MAX_REQUEUES:-50}" ]; then
    log "not requeueing: already restarted $restarts times (GANDIST_MAX_REQUEUES)"
    exit 75
  fi
  # Requeueing ends this job (SIGTERM to this shell): nothing is left to forward.
  trap '' USR1 USR2 TERM
  if scontrol requeue "$SLURM_JOB_ID"; then
    log "$1"
    exit 0
  fi
  log "$2"
  exit 75
}

# exit_after_stop <requeued> <requeue failed> <not requeued>: the end of a run that stopped with
# a checkpoint: requeue it if REQUEUE_ON_STOP (requeue_job, with the first two log lines), else
# log the third and exit 0 after SIGUSR2 (stopped for good), 75 otherwise.
exit_after_stop() {
  if [ "$REQUEUE_ON_STOP" = 1 ]; then
    requeue_job "$1" "$2"
  fi
  log "$3"
  [ "$STOP_SIGNAL" = USR2 ] && exit 0
  exit 75
}
