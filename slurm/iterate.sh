#!/usr/bin/env bash
# iterate.sh — submit the expert-iteration loop as a chain of Slurm jobs, one job per stage (a job
# array for rollouts), each starting only when the jobs it needs finished OK (--dependency=afterok).
# The same stages, folders and order as the main job (mucode/iterate.py), spread over jobs and nodes.
# Prints "stage iteration job_id" lines (also appended to RUN_DIR/slurm/jobs.tsv); logs go to
# RUN_DIR/slurm/.
#
#   slurm/iterate.sh [options] [--] HYDRA_OVERRIDES...
#   slurm/iterate.sh --iterations 2 --shards 8 --nodes 2 run_dir=runs/x
#
# Stages (--stages takes a comma-separated subset; default: all, warmup only for the tiny model):
#   warmup    train_generator.sbatch: the warm start, generator 0 (tiny default model only; one
#             process: it also builds the run's problems and base model, which is not rank-safe)
#   then for each iteration i:
#   rollouts  collect_rollouts.sbatch as an array of --shards tasks (iteration=i), then merge_rollouts
#   verifier  train_verifier.sbatch on --nodes nodes: iter{i}/verifier on the rollouts of 1..i
#   relabel   relabel.sbatch (iteration=i)
#   sft       train_generator.sbatch on --nodes nodes: iter{i}/sft from generator 0 on the relabeled
#             examples of 1..i (+ warm-up replay), the main job's recipe (conf/expert_iteration.yaml sft)
#   then, after the last iteration L:
#   final     rollouts of generator L (iteration=L+1) and final_verifier/ on every rollout
#   evaluate  evaluate.sbatch for base, iter1..iterL (one job each, side by side)
#   report    expert_iteration.sbatch iterations=L: every stage is complete, so it writes report.md
#
# Options:
#   --iterations M     iterations to submit (default 1)
#   --first I          first iteration (default 1; to continue a run whose iterations 1..I-1 are done)
#   --shards N         rollout array size (default 4)
#   --nodes K          nodes of each training job (default 1)
#   --stages LIST      see above
#   --after JOB        make the first job wait for JOB (afterok)
#   --sbatch "OPTS"    extra sbatch options for every job (e.g. "--partition=gpu --account=me")
#   --dry-run          print the sbatch commands instead of submitting (job ids are made up)
# Overrides go to every stage, so they must be valid for all of them (run_dir=, model=, model.*).
# Per-stage Hydra overrides and sbatch options come from the environment (split on spaces):
#   WARMUP_ARGS ROLLOUT_ARGS VERIFIER_ARGS RELABEL_ARGS SFT_ARGS EVAL_ARGS REPORT_ARGS
#   TRAIN_SBATCH (both trainings, e.g. "--gpus-per-node=8 --cpus-per-task=64") WARMUP_SBATCH ROLLOUT_SBATCH
#   EVAL_SBATCH
# A failed job cancels every job that waits for it (--kill-on-invalid-dep); fix and resubmit, with
# --first/--stages or not: finished stages are skipped anyway, each one checks its manifest.
set -euo pipefail

die() { echo "iterate.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

iterations=1 first=1 shards=4 nodes=1 stages="" after="" dry=0
common=()
while [ $# -gt 0 ]; do
  case $1 in
    --iterations) iterations=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --stages) stages=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --sbatch) read -ra extra <<< "$2"; common+=("${extra[@]}"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
for n in "$iterations" "$first" "$shards" "$nodes"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--iterations, --first, --shards and --nodes take a number >= 1, got '$n'"
done
overrides=("$@")
last=$((first + iterations - 1))

run_dir=runs/default tiny=1 embedded=1
for a in ${overrides[@]+"${overrides[@]}"}; do
  case $a in
    run_dir=*) run_dir=${a#run_dir=} ;;
    model=tiny) ;;
    model=*|model.name_or_path=*) tiny=0 ;;
    task=embedded) ;;
    task=*) embedded=0 ;;
  esac
done
if [ -z "$stages" ]; then
  stages=rollouts,verifier,relabel,sft,final,evaluate,report
  [ "$first" = 1 ] && [ "$tiny" = 1 ] && stages=warmup,$stages
fi
for s in ${stages//,/ }; do
  case $s in warmup|rollouts|verifier|relabel|sft|final|evaluate|report) ;;
    *) die "--stages: unknown stage '$s' (warmup,rollouts,verifier,relabel,sft,final,evaluate,report)" ;;
  esac
done
wants() { [[ ,$stages, == *,$1,* ]]; }

# Jobs run from the checkout (relative run_dir and conf paths resolve there), whatever the caller's cwd.
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export MUCODE_ROOT=$root MUCODE_SHARDS=$shards
logs=$run_dir/slurm
[ "$dry" = 1 ] || mkdir -p "$logs"

job=1000
# submit NAME ITERATION DEPENDENCIES SBATCH_OPTS... -- SCRIPT ARGS...  -> sets $job to the new job's id
# (DEPENDENCIES: job ids joined by ':', or empty)
submit() {
  local name=$1 it=$2 dep=$3
  shift 3
  local opts=(--parsable --kill-on-invalid-dep=yes --job-name="mucode-$name-$it" --output="$logs/%x-%j.out"
              ${common[@]+"${common[@]}"})
  [ -n "$dep" ] && opts+=(--dependency="afterok:$dep")
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  if [ "$dry" = 1 ]; then
    job=$((job + 1))
    echo "sbatch ${opts[*]} $*" >&2
  else
    job=$(sbatch "${opts[@]}" "$@")
    job=${job%%;*}
    printf '%s\t%s\t%s\n' "$name" "$it" "$job" >> "$logs/jobs.tsv"
  fi
  printf '%s\t%s\t%s\n' "$name" "$it" "$job"
}

words() { local -n out=$1; read -ra out <<< "${2:-}"; }
words warmup_args "${WARMUP_ARGS:-}"; words rollout_args "${ROLLOUT_ARGS:-}"
words verifier_args "${VERIFIER_ARGS:-}"; words relabel_args "${RELABEL_ARGS:-}"
words sft_args "${SFT_ARGS:-}"; words eval_args "${EVAL_ARGS:-}"; words report_args "${REPORT_ARGS:-}"
words train_sbatch "${TRAIN_SBATCH:-}"; words rollout_sbatch "${ROLLOUT_SBATCH:-}"
words eval_sbatch "${EVAL_SBATCH:-}"; words warmup_sbatch "${WARMUP_SBATCH:-}"
all=(${overrides[@]+"${overrides[@]}"})
joined() { local IFS=$1; shift; echo "$*"; }
rollouts_upto() { local j out=(); for ((j = 1; j <= $1; j++)); do out+=("$run_dir/iter$j/rollouts"); done; joined , "${out[@]}"; }
relabeled_upto() { local j out=(); for ((j = 1; j <= $1; j++)); do out+=("$run_dir/iter$j/relabel/examples"); done; joined , "${out[@]}"; }

# rollouts I: the array over shards, then the merge; sets $job to the merge
rollouts() {
  submit rollouts "$1" "$prev" --array=0-$((shards - 1)) ${rollout_sbatch[@]+"${rollout_sbatch[@]}"} -- \
    slurm/collect_rollouts.sbatch ${all[@]+"${all[@]}"} "iteration=$1" ${rollout_args[@]+"${rollout_args[@]}"}
  submit merge "$1" "$job" -- \
    slurm/merge_rollouts.sbatch ${all[@]+"${all[@]}"} "iteration=$1" ${rollout_args[@]+"${rollout_args[@]}"}
}
# verifier NAME I OUT_DIR: trained on the rollouts of iterations 1..I
verifier() {
  submit "$1" "$2" "$prev" --nodes="$nodes" ${train_sbatch[@]+"${train_sbatch[@]}"} -- \
    slurm/train_verifier.sbatch ${all[@]+"${all[@]}"} "out_dir=$3" "inputs=[$(rollouts_upto "$2")]" \
    ${verifier_args[@]+"${verifier_args[@]}"}
}

# Generators 1..L start from generator 0 (the warm start, or the pretrained model) with the main job's
# recipe (conf/expert_iteration.yaml sft:); warm-up references replayed 1:1 where the task has them.
sft_recipe=(replay=1.0 train.max_steps=170 train.lr=5e-4 train.warmup_steps=10 train.checkpoint_every=50)
[ "$tiny" = 1 ] && sft_recipe+=("init=$run_dir/warmup/model")
[ "$tiny" = 1 ] || [ "$embedded" = 1 ] || sft_recipe+=(warmup=false)

prev=$after
if wants warmup; then
  submit warmup 0 "$prev" --nodes=1 --export=ALL,MUCODE_NPROC_PER_NODE=1 ${warmup_sbatch[@]+"${warmup_sbatch[@]}"} -- \
    slurm/train_generator.sbatch ${all[@]+"${all[@]}"} ${warmup_args[@]+"${warmup_args[@]}"}
  prev=$job
fi
for ((i = first; i <= last; i++)); do
  if wants rollouts; then rollouts "$i"; prev=$job; fi
  if wants verifier; then verifier verifier "$i" "$run_dir/iter$i/verifier"; prev=$job; fi
  if wants relabel; then
    submit relabel "$i" "$prev" -- \
      slurm/relabel.sbatch ${all[@]+"${all[@]}"} "iteration=$i" ${relabel_args[@]+"${relabel_args[@]}"}
    prev=$job
  fi
  if wants sft; then
    submit sft "$i" "$prev" --nodes="$nodes" ${train_sbatch[@]+"${train_sbatch[@]}"} -- \
      slurm/train_generator.sbatch ${all[@]+"${all[@]}"} "out_dir=$run_dir/iter$i/sft" \
      "inputs=[$(relabeled_upto "$i")]" "${sft_recipe[@]}" ${sft_args[@]+"${sft_args[@]}"}
    prev=$job
  fi
done
if wants final; then
  rollouts $((last + 1)); prev=$job
  verifier final_verifier $((last + 1)) "$run_dir/final_verifier"; prev=$job
fi
evals=()
if wants evaluate; then
  for ((i = 0; i <= last; i++)); do
    name=iter$i; [ "$i" = 0 ] && name=base
    submit evaluate "$i" "$prev" ${eval_sbatch[@]+"${eval_sbatch[@]}"} -- \
      slurm/evaluate.sbatch ${all[@]+"${all[@]}"} "name=$name" ${eval_args[@]+"${eval_args[@]}"}
    evals+=("$job")
  done
  [ ${#evals[@]} -gt 0 ] && prev=$(joined : "${evals[@]}")
fi
if wants report; then
  submit report "$last" "$prev" -- \
    slurm/expert_iteration.sbatch ${all[@]+"${all[@]}"} "iterations=$last" ${report_args[@]+"${report_args[@]}"}
fi
