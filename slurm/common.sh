# Shared by the sbatch scripts of this folder (sourced, never run): where the checkout and its Python
# are, thread counts, requeue on the pre-timeout signal, and the two ways a stage starts:
#   run_stage <stage> ARGS...       one process:  srun -n1 python pipelines/<stage>.py ARGS...
#   torchrun_stage <stage> ARGS...  every node:   srun (1 task per node) torchrun --nnodes N ... pipelines/<stage>.py ARGS...
# ARGS are Hydra overrides, passed through untouched. Read slurm/README.md first.
#
# Environment (all optional):
#   MUCODE_ROOT            the checkout (default: the directory sbatch was called from)
#   MUCODE_PYTHON          the interpreter (default: $MUCODE_ROOT/.venv/bin/python, else python3)
#   MUCODE_NPROC_PER_NODE  torchrun processes per node (default: the job's GPUs per node, else 1)
#   MASTER_PORT            rendezvous port on the head node (default: 15000 + job id % 20000)
set -euo pipefail

if [ ! -f "$MUCODE_ROOT/mucode/__init__.py" ]; then
  echo "error: MUCODE_ROOT=$MUCODE_ROOT is not a mucode checkout; submit from the checkout or export MUCODE_ROOT" >&2
  exit 2
fi
cd "$MUCODE_ROOT"
if [ -z "${MUCODE_PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then MUCODE_PYTHON=$MUCODE_ROOT/.venv/bin/python; else MUCODE_PYTHON=python3; fi
fi
export MUCODE_ROOT MUCODE_PYTHON
CPUS=${SLURM_CPUS_PER_TASK:-1}
# Slurm 22.05's srun does not inherit --cpus-per-task from the job: pass it to every step.
CPUS_ARG=(--cpus-per-task="$CPUS")
# DeepSpeed's one-time C++ build lands beside the checkout, shared by every node and job.
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$MUCODE_ROOT/.cache/torch_extensions}
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}

echo "[mucode] job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)}" \
     "restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-?} at $(date -Is); python $MUCODE_PYTHON"

# Requeue on the warning signal (#SBATCH --signal=B:USR1@SECONDS before the time limit): the job goes
# back to the queue and the stage resumes from its checkpoints (training: out_dir/checkpoints;
# rollouts: finished chunks) when it starts again. Preemption with PreemptMode=REQUEUE needs no trap:
# Slurm itself requeues a job submitted with --requeue.
_requeue() {
  echo "[mucode] USR1 at $(date -Is): requeueing job $SLURM_JOB_ID; the stage resumes from its checkpoint"
  scontrol requeue "$SLURM_JOB_ID"
}
trap _requeue USR1

# Run a command in the background and wait for it, so that the USR1 trap runs at once (bash runs
# traps only between commands); returns the command's exit status.
_run() {
  local pid rc=0
  "$@" &
  pid=$!
  while true; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break   # wait returned for a trap, not because the command ended
  done
  return "$rc"
}

run_stage() {
  local stage=$1
  shift
  # One OpenMP/BLAS thread per CPU Slurm gave the task, unless set by the user.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$CPUS}
  _run srun --ntasks=1 --nodes=1 "${CPUS_ARG[@]}" "$MUCODE_PYTHON" "pipelines/$stage.py" "$@"
}

torchrun_stage() {
  local stage=$1 head
  shift
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  # The head node's address as Slurm knows it (NodeAddr): resolvable even where node names are not.
  MASTER_ADDR=$(scontrol show node "$head" -o | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
  export MASTER_ADDR=${MASTER_ADDR:-$head}
  export MASTER_PORT=${MASTER_PORT:-$((15000 + SLURM_JOB_ID % 20000))}
  export MUCODE_NPROC_PER_NODE=${MUCODE_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
  # the node's CPUs shared by its processes, unless set by the user
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( CPUS / MUCODE_NPROC_PER_NODE > 0 ? CPUS / MUCODE_NPROC_PER_NODE : 1 ))}
  echo "[mucode] torchrun: $SLURM_JOB_NUM_NODES node(s) x $MUCODE_NPROC_PER_NODE process(es)," \
       "rendezvous $MASTER_ADDR:$MASTER_PORT (head $head)"
  # One torchrun agent per node; the c10d store lives on node 0 (is_host pinned, so that agents
  # sharing an address do not each try to host it). torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
  # in the environment, where the stage reads them; no --local_rank argument is passed.
  _run srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 \
    "${CPUS_ARG[@]}" --kill-on-bad-exit=1 --label bash -c '
      is_host=false; [ "$SLURM_NODEID" = 0 ] && is_host=true
      exec "$MUCODE_PYTHON" -m torch.distributed.run --nnodes="$SLURM_JOB_NUM_NODES" \
        --nproc_per_node="$MUCODE_NPROC_PER_NODE" --rdzv_backend=c10d \
        --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" \
        --rdzv_conf="is_host=$is_host" --max_restarts=0 "$@"' torchrun "pipelines/$stage.py" "$@"
}
