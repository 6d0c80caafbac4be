#!/usr/bin/env bash
# The DCGAN recipe (configs/dcgan_digits.yaml) on SLURM:
#
#   sbatch slurm/train_dcgan.sh [dotted.override=value ...]
#   sbatch --nodes=2 slurm/train_dcgan.sh train.steps=20000
#
# Everything else is slurm/train.sh, which this script execs (same process, so the batch shell
# that --signal=B:USR1 reaches is train.sh's); the variables it reads are listed there and in
# docs/cluster.md. Variables read here:
#   GANDIST_HOME    the gandist checkout (default: found from the submitted script path)
#   GANDIST_CONFIG  the config to train (default <GANDIST_HOME>/configs/dcgan_digits.yaml)
#
#SBATCH --job-name=gandist-dcgan
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=2
#SBATCH --cpus-per-task=16
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%x-%j.out
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
export GANDIST_HOME  # train.sh needs no search of its own
export gandist_early_stop  # a stop signal that came before the exec below
[ -f "$GANDIST_HOME/slurm/train.sh" ] || die "no slurm/train.sh under GANDIST_HOME=$GANDIST_HOME"

exec bash "$GANDIST_HOME/slurm/train.sh" \
  "${GANDIST_CONFIG:-$GANDIST_HOME/configs/dcgan_digits.yaml}" "$@"
