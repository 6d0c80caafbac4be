#!/usr/bin/env bash
# The DCGAN recipe (configs/dcgan_digits.yaml) on SLURM:
#
#   sbatch slurm/train_dcgan.sh [dotted.override=value ...]
#   sbatch --nodes=2 slurm/train_dcgan.sh train.steps=20000
#
# Everything else is slurm/train.sh, which this script execs (same process, so the batch shell
# that --signal=B:USR1 reaches is train.sh's); the variables it reads are listed there and in
# docs/cluster_slurm.md. Variables read here:
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

[ -n "${SLURM_JOB_ID:-}" ] || { echo "gandist-slurm: error: submit with sbatch" >&2; exit 2; }

# $0 is slurmd's spooled copy of this script; the submitted path is the job's Command.
if [ -z "${GANDIST_HOME:-}" ]; then
  cmd=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=//p' | head -n1)
  if [ -n "$cmd" ] && [ -f "$(dirname "$cmd")/train.sh" ]; then
    GANDIST_HOME=$(cd "$(dirname "$cmd")/.." && pwd)
  else
    GANDIST_HOME=${SLURM_SUBMIT_DIR:-$(pwd)}
  fi
fi
export GANDIST_HOME
[ -f "$GANDIST_HOME/slurm/train.sh" ] \
  || { echo "gandist-slurm: error: no slurm/train.sh under GANDIST_HOME=$GANDIST_HOME" >&2; exit 2; }

exec bash "$GANDIST_HOME/slurm/train.sh" \
  "${GANDIST_CONFIG:-$GANDIST_HOME/configs/dcgan_digits.yaml}" "$@"
