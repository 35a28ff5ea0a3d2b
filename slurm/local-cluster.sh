#!/usr/bin/env bash
# local-cluster.sh — stand up (or tear down) a REAL one-host Slurm cluster (Debian slurm-wlm + munge)
# on a Debian/Ubuntu machine, as root, without systemd. CI and tests/test_slurm.py use it to run the
# sbatch scripts of this folder for real; several slurmd on one host emulate several nodes.
#
#   sudo bash slurm/local-cluster.sh install  # apt-get the 4 packages only (~10 s, ~3.5 MB download)
#   sudo bash slurm/local-cluster.sh up       # install if needed + configure + start (idempotent), sinfo
#   sudo bash slurm/local-cluster.sh down     # stop ONLY the daemons this script started (by PID file)
#   sudo bash slurm/local-cluster.sh status   # show what is running, sinfo; exit 0 only if slurmctld answers
#   sudo bash slurm/local-cluster.sh smoke    # submit a job over all nodes (srun), check it COMPLETED
#
# Exit status 3 means "cannot run here" (not root, packages missing and not installable); the tests
# skip on it. There is no sacct (no slurmdbd): finished jobs stay in `scontrol show job` for an hour.
# Origin: shared/research/slurm-probe.md (measurements, pitfalls).
#
# Knobs (environment variables, all optional):
#   SLURM_LOCAL_INSTALL=1      0 -> never run apt-get; `up` exits 3 if a package is missing.
#   SLURM_LOCAL_NODES=1        number of emulated nodes. 1 -> one slurmd, node named after
#                              the host (or "localhost" if the hostname does not resolve).
#                              N>1 -> N slurmd daemons on this host, nodes n1..nN (Debian's
#                              slurm-wlm is built with --enable-multiple-slurmd).
#   SLURM_LOCAL_NODE_PREFIX=n  name prefix for emulated nodes (N>1 only)
#   SLURM_LOCAL_CPUS=<nproc>   CPUs advertised per node (may exceed the real count:
#                              SlurmdParameters=config_overrides is set)
#   SLURM_LOCAL_MEM_MB=<auto>  RealMemory per node (default: real memory / nodes, minus 5%)
#   SLURM_LOCAL_GPUS=0         fake GPUs per node (gres/gpu backed by /dev/null-alias char
#                              devices); jobs get CUDA_VISIBLE_DEVICES, no real GPU.
#   SLURM_LOCAL_PARTITIONS="debug"  space-separated partition names, all with every node;
#                              the first is the default.
#   SLURM_LOCAL_FEATURES=""    comma-separated node features (for #SBATCH --constraint)
#   SLURM_LOCAL_ADD_HOSTS=0    1 -> append "127.0.0.1 n1 n2 ..." to /etc/hosts (N>1 only) so
#                              that `scontrol show hostnames | head -1` is resolvable.
#   SLURM_LOCAL_STATE=/run/slurm-local   PID files + ownership markers live here.
#   SLURM_LOCAL_CRED_EXPIRE=15 job-step credential lifetime (AuthInfo=cred_expire), which is also
#                              how long a requeued job waits before it may start again (Slurm's
#                              default: 120 s).
set -euo pipefail

ACTION=${1:-up}
NODES=${SLURM_LOCAL_NODES:-1}
PREFIX=${SLURM_LOCAL_NODE_PREFIX:-n}
GPUS=${SLURM_LOCAL_GPUS:-0}
PARTITIONS=${SLURM_LOCAL_PARTITIONS:-debug}
FEATURES=${SLURM_LOCAL_FEATURES:-}
ADD_HOSTS=${SLURM_LOCAL_ADD_HOSTS:-0}
STATE=${SLURM_LOCAL_STATE:-/run/slurm-local}
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-15}
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
SPOOL=/var/spool/slurm-local
LOGDIR=/var/log/slurm-local
MARK="# managed by slurm-local-cluster.sh"
PKGS=(munge slurmctld slurmd slurm-client)

INSTALL=${SLURM_LOCAL_INSTALL:-1}

log() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot() { log "cannot run here: $*"; exit 3; }
[ "$(id -u)" = 0 ] || cannot "must run as root (daemons, /etc/slurm, apt)"

# ---------------------------------------------------------------- helpers
# pid_alive PIDFILE EXE -> 0 if the pid in PIDFILE is alive AND runs EXE
pid_alive() {
  local f=$1 exe=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 < "$f"); [ -n "$pid" ] || return 1
  [ "$(readlink -f /proc/"$pid"/exe 2>/dev/null)" = "$(readlink -f "$exe")" ]
}
# stop_pidfile PIDFILE EXE NAME -> TERM, wait, KILL; only the pid in the file, only if it runs EXE
stop_pidfile() {
  local f=$1 exe=$2 name=$3 pid i
  if ! pid_alive "$f" "$exe"; then rm -f "$f"; return 0; fi
  pid=$(tr -dc 0-9 < "$f")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not exit, SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$f"
}
node_names() {
  if [ "$NODES" -le 1 ]; then
    local h; h=$(hostname -s 2>/dev/null || hostname)
    if getent hosts "$h" >/dev/null 2>&1; then echo "$h"; else echo localhost; fi
  else
    local i; for i in $(seq 1 "$NODES"); do echo "${PREFIX}${i}"; done
  fi
}
apt_retry() {  # apt may be busy (another apt user): wait for the lock, never break it
  local i
  for i in 1 2 3; do
    if DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 "$@"; then return 0; fi
    log "apt-get $1 failed (try $i), retrying in 10s"; sleep 10
  done
  return 1
}

# ---------------------------------------------------------------- install
install_pkgs() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "packages already installed"; return 0; }
  [ "$INSTALL" = 1 ] || cannot "not installed: ${missing[*]} (run: sudo bash $0 install)"
  command -v apt-get >/dev/null || cannot "not installed: ${missing[*]}, and no apt-get to install them"
  log "installing ${missing[*]}"
  # A failed update (no mirror, or an index that cannot be verified) leaves the cached index in place:
  # try the install from it before giving up.
  apt_retry update >/dev/null || log "apt-get update failed (no package mirror?); installing from the cached index"
  # --no-install-recommends: 8 packages, ~3.5 MB download, ~13 MB on disk.
  # In containers policy-rc.d usually forbids service start-up; fine, we start daemons ourselves.
  apt_retry install -y --no-install-recommends "${missing[@]}" >/dev/null || cannot "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- config
write_config() {
  local cpus mem_total mem names first ports port i n part_default=YES feat="" gresattr=""
  cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
  mem_total=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
  mem=${SLURM_LOCAL_MEM_MB:-$(( mem_total * 95 / 100 / NODES ))}
  mapfile -t names < <(node_names)
  [ -n "$FEATURES" ] && feat=" Features=$FEATURES"
  [ "$GPUS" -gt 0 ] && gresattr=" Gres=gpu:$GPUS"

  local tmp; tmp=$(mktemp)
  {
    echo "$MARK"
    cat <<EOF
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=cred_expire=$CRED_EXPIRE
CredType=cred/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no systemd needed
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: sacct does not work; use sbatch --wait / scontrol show job / jobcomp log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
SchedulerType=sched/backfill
# a small cluster: schedule every 5 s (default 60/30 s), so that e.g. a requeued job starts soon after
# its hold (cred_expire) ends
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
MinJobAge=3600
EOF
    [ "$GPUS" -gt 0 ] && echo "GresTypes=gpu"
    i=0
    for n in "${names[@]}"; do
      i=$((i + 1))
      if [ "$NODES" -le 1 ]; then port=""; else port=" Port=$((17000 + i))"; fi
      echo "NodeName=$n NodeHostname=$n NodeAddr=127.0.0.1$port CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem$gresattr$feat State=UNKNOWN"
    done
    for p in $PARTITIONS; do
      echo "PartitionName=$p Nodes=ALL Default=$part_default MaxTime=INFINITE State=UP"
      part_default=NO
    done
  } > "$tmp"

  mkdir -p /etc/slurm
  if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
    log "backing up foreign $CONF to $CONF.orig"; cp -n "$CONF" "$CONF.orig"
  fi
  if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then CONF_CHANGED=0; else CONF_CHANGED=1; install -m 0644 "$tmp" "$CONF"; fi
  rm -f "$tmp"

  if [ "$GPUS" -gt 0 ]; then
    # gres/gpu needs a File= per GPU that is a char/block device (file-less GPUs are dropped
    # by slurmd 22.05). Make /dev/null aliases under $STATE/fakegpu.
    mkdir -p "$STATE/fakegpu"
    for i in $(seq 0 $((GPUS - 1))); do
      [ -c "$STATE/fakegpu/gpu$i" ] || mknod "$STATE/fakegpu/gpu$i" c 1 3
    done
    local g; g=$(printf '%s\nName=gpu File=%s/fakegpu/gpu[0-%d]\n' "$MARK" "$STATE" $((GPUS - 1)))
    if [ "$(cat "$GRES_CONF" 2>/dev/null)" != "$g" ]; then printf '%s\n' "$g" > "$GRES_CONF"; CONF_CHANGED=1; fi
  elif [ -f "$GRES_CONF" ] && head -1 "$GRES_CONF" | grep -qF "$MARK"; then
    rm -f "$GRES_CONF"; CONF_CHANGED=1
  fi

  if [ "$ADD_HOSTS" = 1 ] && [ "$NODES" -gt 1 ]; then
    for n in "${names[@]}"; do
      getent hosts "$n" >/dev/null 2>&1 || echo "127.0.0.1 $n   $MARK" >> /etc/hosts
    done
  fi
}

# ---------------------------------------------------------------- daemons
MUNGED=/usr/sbin/munged
SLURMCTLD=/usr/sbin/slurmctld
SLURMD=/usr/sbin/slurmd
MUNGE_PID=/run/munge/munged.pid

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if pid_alive "$STATE/munged.pid" "$MUNGED" && munge_ok; then log "munged running (started by us earlier)"; return 0; fi
  if munge_ok; then log "munged already answering (not started by us: will not stop it)"; return 0; fi
  [ -s /etc/munge/munge.key ] || { log "creating munge key"; mungekey --create --force; }
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- "$MUNGED"            # forks; writes /run/munge/munged.pid
  local i; for i in $(seq 1 50); do munge_ok && break; sleep 0.1; done
  munge_ok || die "munged did not come up (see /var/log/munge/munged.log)"
  cp "$MUNGE_PID" "$STATE/munged.pid"       # ownership marker: we started this one
  log "munged started (pid $(cat "$STATE/munged.pid"))"
}

ctld_running() { pid_alive "$STATE/slurmctld.pid" "$SLURMCTLD"; }
slurmd_running() { pid_alive "$STATE/slurmd-$1.pid" "$SLURMD"; }

start_slurm() {
  local n i
  if ! ctld_running; then
    # -c: start from a clean state (no jobs/nodes from an earlier run)
    "$SLURMCTLD" -c
    for i in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
    scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld not up (see $LOGDIR/slurmctld.log)"
    log "slurmctld started (pid $(cat "$STATE/slurmctld.pid"))"
  fi
  for n in $(node_names); do
    if ! slurmd_running "$n"; then
      mkdir -p "$SPOOL/d/$n"
      "$SLURMD" -N "$n"                      # daemonizes; pid file $STATE/slurmd-$n.pid
      for i in $(seq 1 50); do slurmd_running "$n" && break; sleep 0.1; done
      slurmd_running "$n" || die "slurmd $n did not start (see $LOGDIR/slurmd-$n.log)"
      log "slurmd $n started (pid $(cat "$STATE/slurmd-$n.pid"))"
    fi
  done
}

wait_idle() {
  local i states=""
  for i in $(seq 1 120); do
    states=$(sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    # every node usable (idle/mix/alloc/completing) and at least one node listed
    if [ -n "$states" ] && ! echo "$states" | tr ' ' '\n' | grep -q -v -E '^(idle|mix|alloc|comp|)$'; then
      return 0
    fi
    sleep 0.5
  done
  sinfo -N -o '%N %t %E' >&2 || true
  die "nodes not idle after 60s (states: $states)"
}

stop_all() {
  local f n
  if ctld_running && squeue -h -o %A 2>/dev/null | grep -q .; then
    log "cancelling remaining jobs"; scancel --full $(squeue -h -o %A) 2>/dev/null || true
    for _ in $(seq 1 50); do squeue -h -o %A 2>/dev/null | grep -q . || break; sleep 0.2; done
  fi
  for f in "$STATE"/slurmd-*.pid; do
    [ -e "$f" ] || continue
    n=${f##*/slurmd-}; n=${n%.pid}
    stop_pidfile "$f" "$SLURMD" "slurmd $n"
  done
  stop_pidfile "$STATE/slurmctld.pid" "$SLURMCTLD" slurmctld
  if [ -s "$STATE/munged.pid" ]; then     # only if WE started it
    stop_pidfile "$STATE/munged.pid" "$MUNGED" munged
    rm -f "$MUNGE_PID"
  fi
  rm -rf "$STATE/fakegpu"; rmdir "$STATE" 2>/dev/null || true
  # /etc/hosts lines we added (SLURM_LOCAL_ADD_HOSTS=1); rewritten in place (works on bind mounts)
  if grep -qF "$MARK" /etc/hosts 2>/dev/null; then
    local h; h=$(grep -vF "$MARK" /etc/hosts); printf '%s\n' "$h" > /etc/hosts
  fi
}

# wait_job JOBID -> polls every 0.5s (sbatch --wait polls slowly: ~10s for a 5s job),
# prints "JobState ExitCode", returns 0 only for COMPLETED. Needs MinJobAge (set to 3600).
wait_job() {
  local j=$1 st
  while squeue -h -j "$j" 2>/dev/null | grep -q .; do sleep 0.5; done
  st=$(scontrol show job "$j" 2>/dev/null | grep -oE '(JobState|ExitCode)=[^ ]+' | tr '\n' ' ')
  echo "job $j: $st"
  case "$st" in *JobState=COMPLETED*) return 0;; *) return 1;; esac
}

smoke() {
  local n j out
  n=$(sinfo -h -N -o %N | sort -u | wc -l)
  out=$(mktemp -t slurm-local-smoke.XXXXXX)
  j=$(sbatch --parsable -N "$n" --ntasks-per-node=1 -o "$out" \
      --wrap 'srun bash -c "echo task \$SLURM_PROCID/\$SLURM_NTASKS on \$SLURMD_NODENAME"')
  wait_job "$j" || { cat "$out"; die "smoke job failed"; }
  sort "$out"; rm -f "$out"
}

status() {
  local f
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    printf '%-22s pid %-8s %s\n' "$(basename "$f" .pid)" "$(cat "$f")" \
      "$(readlink -f /proc/"$(cat "$f")"/exe 2>/dev/null || echo DEAD)"
  done
  sinfo 2>/dev/null || { echo "slurmctld not reachable"; return 1; }
}

# ---------------------------------------------------------------- main
case "$ACTION" in
  install) INSTALL=1; install_pkgs ;;
  up)
    install_pkgs
    mkdir -p "$STATE" "$SPOOL/ctld" "$SPOOL/d" "$LOGDIR"
    CONF_CHANGED=0
    write_config
    if [ "$CONF_CHANGED" = 1 ] && { ctld_running || ls "$STATE"/slurmd-*.pid >/dev/null 2>&1; }; then
      log "config changed: restarting the slurm daemons we started"
      # stop slurm daemons but keep munged
      for f in "$STATE"/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" "$SLURMD" "slurmd"; done
      stop_pidfile "$STATE/slurmctld.pid" "$SLURMCTLD" slurmctld
    fi
    # slurmd daemons for nodes no longer in the config
    for f in "$STATE"/slurmd-*.pid; do
      [ -e "$f" ] || continue
      n=${f##*/slurmd-}; n=${n%.pid}
      node_names | grep -qx "$n" || stop_pidfile "$f" "$SLURMD" "slurmd $n (stale)"
    done
    start_munge
    start_slurm
    wait_idle
    sinfo
    ;;
  down) stop_all; log "down" ;;
  status) status ;;
  smoke) smoke ;;
  *) die "usage: $0 [install|up|down|status|smoke]" ;;
esac
