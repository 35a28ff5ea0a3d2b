#!/usr/bin/env bash
# iterate.sh — submit the main job (mucode/stages/expert_iteration.py) as a chain of Slurm jobs: its
# plan, one job per stage (an array for rollouts), each waiting for the jobs it needs (afterok), with
# the same configs the main job gives each stage. The chain is built by `python -m mucode.slurm`
# (see its --help); this script only finds the checkout and its Python.
#
#   slurm/iterate.sh [--shards N] [--nodes K] [--stages LIST] [--after JOB] [--sbatch "OPTS"]
#                    [--train-sbatch "OPTS"] [--rollout-sbatch "OPTS"] [--eval-sbatch "OPTS"] [--dry-run]
#                    [--] MAIN_JOB_OVERRIDES...
#   slurm/iterate.sh --shards 8 --nodes 2 run_dir=runs/x iterations=3 rollout.samples=15
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${MUCODE_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=$root/.venv/bin/python; else python=python3; fi
fi
export MUCODE_ROOT=$root
exec "$python" -m mucode.slurm "$@"
