#!/usr/bin/env bash
# gandist on SLURM: one training run over N nodes x P processes, preemption-safe.
#
#   sbatch slurm/train.sh <config.yaml> [dotted.override=value ...]
#   sbatch --nodes=4 --gpus-per-node=8 slurm/train.sh configs/wgan_gp_digits.yaml optim.d.lr=1e-4
#
# Submit from the repository root (the config path and train.output_dir are relative to the
# submit directory). sbatch command-line options override the #SBATCH lines below.
#
# What it does: one `srun` task per node runs torchrun (or accelerate launch) with a c10d
# rendezvous hosted on the first node of the allocation (node 0, $SLURM_NODEID expanded inside
# each node's task). The run is `train.run_name=$GANDIST_RUN_NAME` with `train.resume=auto`, so
# a requeued job continues from `<run>/checkpoints/latest`.
#
# A crashed rank: when any training process dies (crash, OOM kill, kill -9), its node's torchrun
# stops its other workers and joins the rendezvous again, which makes torchrun on every other
# node stop its workers too (even ones blocked in a collective: SIGTERM, SIGKILL 30 s later);
# then all start again and resume from checkpoints/latest, within about a minute, up to
# GANDIST_MAX_RESTARTS times per job. The others never wait for dist.timeout_s.
#
# Signals: this batch shell forwards each stop signal to the job step as SIGTERM (never SIGUSR1:
# that kills torchrun), every rank stops at the same step and checkpoints, rank 0 writes
# <run>/status.json, and this script acts on it:
#   SIGUSR1 (--signal=B:USR1@<s> before the time limit, or `scancel --signal=USR1 --batch <job>`):
#           checkpoint, then `scontrol requeue`; the requeued job resumes (train.resume=auto).
#   SIGTERM (scancel, preemption; SIGKILL follows after KillWait/GraceTime): checkpoint and stop.
#           Not requeued by default, so that `scancel` still cancels; preemption with
#           PreemptMode=REQUEUE is requeued by SLURM itself. GANDIST_REQUEUE_ON_TERM=1 requeues.
#   SIGUSR2 (`scancel --signal=USR2 --batch <job>`): checkpoint and stop, exit 0.
# Exit: 0 completed (or stopped by SIGUSR2, or requeued); 75 stopped with a checkpoint and not
# requeued (resume by resubmitting with GANDIST_RUN_NAME=<run name>); 1 failed; 2 bad usage.
#
# Variables (all optional; sbatch passes the submitting shell's environment to the job):
#   GANDIST_RUNTIME          venv (default) | apptainer
#   GANDIST_VENV             venv mode: the virtual environment to use (default: <repo>/.venv if
#                            it exists, else whatever torchrun/python is on PATH)
#   GANDIST_IMAGE            apptainer mode: the image (.sif file or docker://... URI); required
#   GANDIST_APPTAINER        apptainer mode: the binary (default: apptainer, else singularity)
#   GANDIST_APPTAINER_ARGS   apptainer mode: extra `exec` options, split on spaces
#                            (e.g. "--bind /data:/data"); --nv is always passed
#   GANDIST_LAUNCHER         torchrun (default) | accelerate
#   GANDIST_MIXED_PRECISION  accelerate launcher: --mixed_precision (no | bf16 | fp16); unset:
#                            accelerate's config file decides (train.precision=auto follows it)
#   GANDIST_NPROC_PER_NODE   processes per node (default: GPUs allocated per node, else
#                            --ntasks-per-node)
#   GANDIST_MASTER_PORT      rendezvous port on the first node (default 20000 + job id % 20000)
#   GANDIST_MAX_RESTARTS     restarts of all ranks after a rank fails, per job (default 3); each
#                            resumes from the latest checkpoint (train.checkpoint_every bounds
#                            the steps lost). 0: a failed rank ends the job (exit 1)
#   GANDIST_RUN_NAME         train.run_name (default <config name>-<job id>; the job id survives
#                            requeues, so the requeued job finds its own checkpoints)
#   GANDIST_OVERRIDES        more dotted overrides, split on spaces, applied after the arguments
#   GANDIST_WANDB_MODE       tracking.wandb: auto (config default: online when WANDB_API_KEY is
#                            set, else offline) | online | offline | disabled
#   WANDB_API_KEY            W&B key (from the environment; never written into a script)
#   GANDIST_WANDB_KEY_FILE   a file holding the W&B key, read at job start (keeps the key out of
#                            the job's recorded environment)
#   GANDIST_SHUTDOWN_TIMEOUT seconds torchrun waits for workers to checkpoint and exit after
#                            SIGTERM before it kills them (default 300; exported as
#                            TORCH_ELASTIC_SHUTDOWN_TIMEOUT, which recent torch reads; older
#                            torchrun always waits 30 s). Keep it below the --signal lead time.
#   GANDIST_MAX_REQUEUES     stop requeueing after this many restarts (default 50)
#   GANDIST_REQUEUE_ON_TERM  1: requeue after SIGTERM too (clusters with PreemptMode=CANCEL);
#                            then stop a job for good with `scancel --signal=USR2 --batch`
#   GANDIST_HOME             the gandist checkout (default: found from the submitted script path)
#
#SBATCH --job-name=gandist
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
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
[ $# -ge 1 ] || die "usage: sbatch slurm/train.sh <config.yaml> [dotted.override=value ...]"
CONFIG=$1
shift

# ---------------------------------------------------------------- runtime: venv or container

setup_runtime gpu
LAUNCHER=${GANDIST_LAUNCHER:-torchrun}
LAUNCH_BIN=("${RUNTIME_PREFIX[@]}" "$RUNTIME_BIN$LAUNCHER")
# (In apptainer mode the config may be a path inside the image; the resolver below checks it.)
if [ "$RUNTIME" = venv ] && [ ! -f "$CONFIG" ]; then
  die "config not found: $CONFIG (relative to $(pwd))"
fi

# ---------------------------------------------------------------- the run

CONFIG_NAME=$(basename "$CONFIG")
CONFIG_NAME=${CONFIG_NAME%.*}
RUN_NAME=${GANDIST_RUN_NAME:-$CONFIG_NAME-$SLURM_JOB_ID}
# Ours first, so the user's arguments can still change anything (a later override wins).
OVERRIDES=("train.run_name=$RUN_NAME" "train.resume=auto")
add_user_overrides "$@"
read_wandb_key_file

# The run directory, resolved by gandist's own config loader (this also validates the config
# and the overrides before any node starts).
RESOLVE_PY='
import sys
from pathlib import Path
from gandist.config import ConfigError, load_config
try:
    cfg = load_config(sys.argv[1], sys.argv[2:])
except ConfigError as exc:
    sys.exit(f"gandist: config error: {exc}")
t = cfg.train
run_dir = Path(t.output_dir, t.run_name or cfg.name or "run").resolve()
from gandist.training.run_lock import live_holder
in_use = live_holder(run_dir)  # another job trains into it: stop here, not in every worker
if in_use:
    sys.exit(f"gandist: error: {in_use}")
print(run_dir)
'

# ---------------------------------------------------------------- topology

HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
NNODES=${SLURM_NNODES:-1}
gpus_per_node() {  # 0 when none is allocated or seen
  local g=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}
  g=${g##*:}  # "a100:4" -> "4"
  if [ -z "$g" ] && command -v nvidia-smi >/dev/null 2>&1; then
    g=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  [[ "$g" =~ ^[1-9][0-9]*$ ]] && printf '%s\n' "$g" || printf '0\n'
}
# Processes per node: GANDIST_NPROC_PER_NODE, else one per GPU, else --ntasks-per-node (a
# CPU-only job asking for 2 tasks per node gets 2 processes). Either way one srun task per node
# runs the launcher, with every CPU the node's tasks were given.
TASKS_PER_NODE=${SLURM_NTASKS_PER_NODE:-1}
[[ "$TASKS_PER_NODE" =~ ^[1-9][0-9]*$ ]] || TASKS_PER_NODE=1
GPUS=$(gpus_per_node)
if [ -n "${GANDIST_NPROC_PER_NODE:-}" ]; then
  NPROC=$GANDIST_NPROC_PER_NODE
elif [ "$GPUS" -gt 0 ]; then
  NPROC=$GPUS
  if [ "$TASKS_PER_NODE" -gt 1 ] && [ "$TASKS_PER_NODE" != "$GPUS" ]; then
    log "--ntasks-per-node=$TASKS_PER_NODE: running one process per GPU ($GPUS per node);" \
        "set GANDIST_NPROC_PER_NODE for another count"
  fi
else
  NPROC=$TASKS_PER_NODE
fi
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || die "GANDIST_NPROC_PER_NODE: not a positive number: '$NPROC'"
# Resolved with the world it will start (dist.world_size: a global batch that does not split
# over it fails here, in a second, exit 2), this override for the check only.
RUN_DIR=$("${PY[@]}" -c "$RESOLVE_PY" "$CONFIG" "${OVERRIDES[@]}" \
            "dist.world_size=$(( NNODES * NPROC ))") \
  || die "cannot resolve the run directory: a bad config or override, the run directory in" \
         "use by another job, or no gandist in ${PY[*]}"
STATUS=$RUN_DIR/status.json
PORT=${GANDIST_MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 20000 ))}

MAX_RESTARTS=${GANDIST_MAX_RESTARTS:-3}
[[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]] || die "GANDIST_MAX_RESTARTS: not a number: '$MAX_RESTARTS'"

# c10d rendezvous (torchrun's elastic agent): the store runs in node 0's torchrun (is_host=1,
# set per node below: the endpoint's name need not match what the head node calls itself), the
# id is the job id (the same across requeues). Ranks are assigned by the rendezvous, so
# torchrun gets no --node_rank; global rank 0 may be on any node (status.json is on the shared
# filesystem either way).
RANK_FLAG=""
CONF_FLAG=""
case "$LAUNCHER" in
  torchrun)
    CONF_FLAG=--rdzv_conf
    LAUNCH_ARGS=(--nnodes="$NNODES" --nproc_per_node="$NPROC"
                 --rdzv_backend=c10d --rdzv_endpoint="$HEAD:$PORT" --rdzv_id="$SLURM_JOB_ID"
                 --max_restarts="$MAX_RESTARTS")
    ;;
  accelerate)
    RANK_FLAG=--machine_rank
    LAUNCH_BIN+=(launch)
    LAUNCH_ARGS=(--num_machines="$NNODES" --num_processes="$(( NNODES * NPROC ))"
                 --main_process_ip="$HEAD" --main_process_port="$PORT" --dynamo_backend=no)
    # No --mixed_precision unless asked: accelerate then takes its config file's setting, which
    # train.precision=auto (the default) follows; an explicit train.precision still wins.
    if [ -n "${GANDIST_MIXED_PRECISION:-}" ]; then
      LAUNCH_ARGS+=(--mixed_precision="$GANDIST_MIXED_PRECISION")
    fi
    if [ "$NNODES" -gt 1 ]; then
      # Without --same_network the endpoint is ip:port; accelerate has no --rdzv_id (the store
      # on this job's port is the job's own anyway).
      CONF_FLAG=--rdzv_conf
      LAUNCH_ARGS+=(--rdzv_backend=c10d --max_restarts="$MAX_RESTARTS")
    else
      # One node: accelerate offers only the static rendezvous here (c10d would need an endpoint
      # it does not pass on), whose shared store hangs restarted workers (pytorch#135712). So no
      # restarts: a failed rank stops the others (SIGKILL within 30 s) and the job fails (exit 1).
      MAX_RESTARTS=0
      LAUNCH_ARGS+=(--rdzv_backend=static --same_network --max_restarts=0)
    fi
    if [ $(( NNODES * NPROC )) -gt 1 ]; then
      LAUNCH_ARGS=(--multi_gpu "${LAUNCH_ARGS[@]}")
    fi
    ;;
  *) die "GANDIST_LAUNCHER must be torchrun or accelerate, not '$LAUNCHER'" ;;
esac
LAUNCH_ARGS+=(-m gandist train "$CONFIG" "${OVERRIDES[@]}")

export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${GANDIST_SHUTDOWN_TIMEOUT:-300}
# torchrun (torch >= 2.4) lends the rendezvous store to the workers' process group and keeps it
# across restarts: restarted workers then meet the previous attempt's keys and hang in
# init_process_group (pytorch/pytorch#135712). With this, each attempt gets a store of its own.
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $NNODES node(s) [$SLURM_JOB_NODELIST]," \
    "$NPROC process(es) per node, head $HEAD:$PORT, $RUNTIME/$LAUNCHER," \
    "up to $MAX_RESTARTS restart(s) after a failed rank"
log "run directory $RUN_DIR"

# ---------------------------------------------------------------- signals

# A stop signal (lib.sh: trap_stop_signals) reaches the step as SIGTERM, never as SIGUSR1.
stop_child() {
  log "$1: asking the run to checkpoint and stop (SIGTERM to the job step)"
  # scancel without --batch signals the job steps only (srun's tasks: torchrun and its
  # workers), not this shell. SIGTERM to srun itself would make srun SIGKILL the step.
  # (It fails when SLURM is already ending the job: its steps got SIGTERM from SLURM then.)
  scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null \
    || log "scancel --signal=TERM failed: the job is ending, SLURM signals the step itself"
}
trap_stop_signals

# ---------------------------------------------------------------- launch

STARTED=$(date +%s)
[ -z "$STOP_SIGNAL" ] || log "SIG$STOP_SIGNAL during the script's start-up: not launching"
if [ -z "$STOP_SIGNAL" ]; then  # else signalled before the launch: nothing to run
  # --kill-on-bad-exit=0: after a preemption every node's torchrun exits 1, and the first must
  # not kill the others while they finish. --wait=60: a node's torchrun exits only at the end
  # (all within seconds of each other) or when it gives up (restarts used up, its rendezvous
  # lost); then the other nodes' tasks, whose workers may sit in a collective with the dead
  # ones, are ended 60 s later instead of at dist.timeout_s.
  SRUN=(srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=0
        --wait=60)
  # Slurm 22.05+ srun does not inherit --cpus-per-task from the job; pass on the node's CPUs.
  if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    SRUN+=(--cpus-per-task="$(( SLURM_CPUS_PER_TASK * TASKS_PER_NODE ))")
  fi
  # One task per node. The single-quoted script runs on each node, so $SLURM_NODEID is that
  # node's own: 0 on the head node, which hosts the rendezvous (is_host=1). Arguments: how many
  # words make up the launcher command, the rank flag and the rendezvous-config flag (each ""
  # when not used), that command, then the launcher's args.
  # shellcheck disable=SC2016
  run_child "${SRUN[@]}" bash -c 'n=$1 rank_flag=$2 conf_flag=$3; shift 3
    node=()
    [ -n "$rank_flag" ] && node+=("$rank_flag=$SLURM_NODEID")
    [ -n "$conf_flag" ] && node+=("$conf_flag=is_host=$(( SLURM_NODEID == 0 ))")
    exec "${@:1:n}" "${node[@]}" "${@:n+1}"' gandist-node \
    "${#LAUNCH_BIN[@]}" "$RANK_FLAG" "$CONF_FLAG" "${LAUNCH_BIN[@]}" "${LAUNCH_ARGS[@]}"
fi

# ---------------------------------------------------------------- outcome

# status.json is the contract (torchrun exits 1 whenever a worker exits non-zero, including
# the preempted exit code 75). Only a status written by this launch counts: an older one may
# be the previous requeue's "preempted".
# Read through the runtime, so that in a container the path means what it meant to the run.
STATUS_PY='
import json, sys
try:
    with open(sys.argv[1]) as fh:
        d = json.load(fh)
    print(d.get("state", "missing"), d.get("step", "?"), int(d.get("time", 0)))
except (OSError, ValueError, TypeError):
    print("missing ? 0")
'
read -r STATE STEP WRITTEN < <("${PY[@]}" -c "$STATUS_PY" "$STATUS" 2>/dev/null) || true
STATE=${STATE:-missing}
STEP=${STEP:-?}
[[ "${WRITTEN:-}" =~ ^[0-9]+$ ]] || WRITTEN=0
if [ "$STATE" != missing ] && [ "$WRITTEN" -lt "$STARTED" ]; then
  STATE=stale
fi
if [ -n "$CHILD_PID" ]; then  # else nothing was launched (a stop signal during start-up)
  log "step exited with $CHILD_RC; status.json: $STATE at step $STEP${STOP_SIGNAL:+ (after SIG$STOP_SIGNAL)}"
fi

stopped() {  # a checkpoint exists at the stop step; requeue or say how to continue
  local again="GANDIST_RUN_NAME=$RUN_NAME"
  exit_after_stop "requeued job $SLURM_JOB_ID; it resumes from $RUN_DIR/checkpoints/latest, if any" \
    "scontrol requeue failed (job cancelled?); resubmit with $again to continue from the checkpoint" \
    "stopped at step $STEP, not requeued; to continue, submit the same command again with $again"
}

case "$STATE" in
  completed)
    log "completed at step $STEP"
    exit 0
    ;;
  preempted)
    stopped
    ;;
  failed)
    log "run failed at step $STEP (the error is above and in $STATUS)"
    exit 1
    ;;
  *)
    if [ -n "$STOP_SIGNAL" ]; then
      # Signalled before the workers could write a status (e.g. during start-up): nothing new
      # to save; a requeued job resumes from the latest checkpoint, if any.
      log "signalled before the run reported a status"
      stopped
    fi
    log "run failed before reporting a status (see the log above)"
    exit 1
    ;;
esac
