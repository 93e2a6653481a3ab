#!/bin/bash
# Runs scripts/slurm/amlit.sbatch under a real one-node SLURM on this machine (Debian's slurm-wlm + munge; slurmctld
# and slurmd on 127.0.0.1, CPUs as the resource): the demo config with 2 tasks (gloo DDP on CPU) trains and tests,
# writing one results.json. Then the same job is interrupted mid-run; it must be requeued, resume from its
# checkpoint and end with the weights and optimizer state of the uninterrupted run (max |difference| printed):
#   requeue  `scontrol requeue` (what preemption does): SIGTERM -> last.ckpt -> the restart resumes it
#   signal   `scancel --signal=USR1` (what #SBATCH --signal=SIGUSR1@90 sends before the time limit): Lightning
#            saves an hpc checkpoint and requeues the job itself
#
#   sudo scripts/slurm/check_local.sh [--steps N] [--interrupt-at K] [--scenarios requeue,signal] [--keep] [-- ARGS]
#
# A resume is checked twice: the restarted fit must say it restored a checkpoint (a restart from scratch also ends
# with the reference's weights, training being deterministic on CPU), and the final state must equal the reference's.
#
# Root: munged and slurmd run as root, in a private folder (own munge key and socket, own ports 16817/16818), so a
# SLURM already on the machine is not touched; slurm-wlm and munge are installed with apt-get when missing. Needs
# the project's venv (make install): the jobs run amlit from .venv/bin. Everything is torn down at the end.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --steps N          training steps of every run (default 100; the demo's epoch has 67 steps)
  --interrupt-at K   interrupt the runs once they pass step K (default 75, in the second epoch)
  --scenarios LIST   comma-separated, of requeue and signal (default: requeue,signal)
  --keep             keep the cluster folder (logs, runs, checkpoints) instead of removing it
  -- ARGS            config overrides for every job (e.g. -- --data.init_args.num_workers=0)
EOF
}

steps=100
interrupt_at=75
overrides=()
scenarios=requeue,signal
keep=0
while (($#)); do
    case $1 in
        --steps) steps=${2:?--steps needs a number}; shift 2 ;;
        --interrupt-at) interrupt_at=${2:?--interrupt-at needs a number}; shift 2 ;;
        --scenarios) scenarios=${2:?--scenarios needs a list}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; overrides=("$@"); break ;;
        *) echo "check_local.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for number in "$steps" "$interrupt_at"; do
    [[ $number =~ ^[1-9][0-9]*$ ]] || { echo "check_local.sh: not a positive integer: $number" >&2; exit 2; }
done
((interrupt_at < steps)) || { echo "check_local.sh: --interrupt-at ($interrupt_at) must be below --steps ($steps)" >&2; exit 2; }
IFS=, read -ra scenario_list <<<"$scenarios"
for scenario in "${scenario_list[@]}"; do
    [[ $scenario == requeue || $scenario == signal ]] \
        || { echo "check_local.sh: unknown scenario: $scenario (requeue, signal)" >&2; exit 2; }
done
((EUID == 0)) || { echo "check_local.sh: run as root (munged and slurmd are started as root)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
[[ -x $repo/.venv/bin/amlit ]] || { echo "check_local.sh: no $repo/.venv/bin/amlit: run make install first" >&2; exit 2; }
started=$SECONDS
exec 3>&1  # timings go to the script's stdout even when the timed command's output is redirected
timed() {  # timed LABEL COMMAND...: run it, then print how long it took
    local label=$1 t0=$SECONDS status=0
    shift
    "$@" || status=$?
    echo "[time] $label: $((SECONDS - t0)) s" >&3
    return $status
}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

cluster=$(mktemp -d /tmp/amlit-slurm.XXXXXX)
chmod 755 "$cluster"  # munged wants every folder above its socket searchable
mkdir -p "$cluster/state" "$cluster/spool" "$cluster/log" "$cluster/data"
daemons=()
teardown() {
    local status=$?
    set +e  # tear down as much as possible, whatever failed
    if [[ -n ${SLURM_CONF:-} ]] && [[ -n $(squeue --noheader 2>/dev/null) ]]; then
        scancel --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 40); do [[ -z $(squeue --noheader 2>/dev/null) ]] && break; sleep 1; done
    fi
    for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do kill "${daemons[i]}" 2>/dev/null || true; done
    for pid in "${daemons[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((keep)); then echo "kept $cluster"; else rm -rf "$cluster"; fi
    echo "[time] total: $((SECONDS - started)) s"
    exit $status
}
trap teardown EXIT

echo "== cluster in $cluster"
node=$(hostname -s)
dd if=/dev/urandom of="$cluster/munge.key" bs=128 count=1 status=none
chmod 600 "$cluster/munge.key"
munged --force --foreground --key-file="$cluster/munge.key" --socket="$cluster/munge.socket" \
    --pid-file="$cluster/munged.pid" --log-file="$cluster/log/munged.log" --seed-file="$cluster/munged.seed" \
    >"$cluster/log/munged.out" 2>&1 &
daemons+=($!)
cat >"$cluster/slurm.conf" <<EOF
ClusterName=amlitcheck
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cluster/munge.socket
StateSaveLocation=$cluster/state
SlurmdSpoolDir=$cluster/spool
SlurmctldPidFile=$cluster/slurmctld.pid
SlurmdPidFile=$cluster/slurmd.pid
SlurmctldLogFile=$cluster/log/slurmctld.log
SlurmdLogFile=$cluster/log/slurmd.log
# No cgroups (none usable in a sandbox): processes tracked by parent id, tasks not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# Keep finished jobs visible to scontrol for an hour; 30 s between SIGTERM and SIGKILL (the default).
MinJobAge=3600
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2)) State=UNKNOWN
PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$cluster/slurm.conf
# The jobs' progress bar is how this script sees the step (latest_step); in a log file amlit refreshes it only
# every 100 batches (TQDM_MINITERS), so ask for every batch here. sbatch passes the environment to the jobs.
export TQDM_MINITERS=1
sleep 1
slurmctld -D -f "$SLURM_CONF" >"$cluster/log/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D -f "$SLURM_CONF" >"$cluster/log/slurmd.out" 2>&1 &
daemons+=($!)
for _ in $(seq 30); do
    [[ $(sinfo --noheader --format=%t 2>/dev/null) == idle ]] && break
    sleep 1
done
sinfo
[[ $(sinfo --noheader --format=%t) == idle ]] || { tail "$cluster"/log/*; echo "FAIL: the node did not come up" >&2; exit 1; }

job_field() { scontrol show job "$1" | grep -oE "(^| )$2=[^ ]*" | head -1 | cut -d= -f2; }
latest_step() {  # the global step of the job's progress bar: E * (batches of epoch 0) + n of the newest "Epoch E: n/N"
    grep -aoE 'Epoch [0-9]+: +[0-9]+%\|[^|]*\| *[0-9]+/[0-9]+ \[' "$1" 2>/dev/null \
        | sed -E 's/Epoch ([0-9]+):.*\| *([0-9]+)\/([0-9]+) \[/\1 \2 \3/' \
        | awk '$1 == 0 {epoch_length = $3} END {if (NR) print $1 * epoch_length + $2}'
}
wait_for() {  # wait_for JOB STATE...: until the job is in one of the states (30 min at most)
    local job=$1 state
    shift
    for _ in $(seq 1800); do
        state=$(job_field "$job" JobState)
        for wanted in "$@"; do [[ $state == "$wanted" ]] && return 0; done
        sleep 1
    done
    echo "FAIL: job $job still $state after 30 min" >&2
    return 1
}

# One folder per run, as a user's run folder: configs/ (the repository's), data/ (shared), runs/ (its own).
submit() {  # submit NAME: sbatch the script on the demo config with 2 tasks; prints the job id
    local dir=$cluster/$1
    mkdir -p "$dir/runs"
    ln -s "$repo/configs" "$dir/configs"
    ln -s "$cluster/data" "$dir/data"
    AMLIT_CONFIG=configs/demo.yaml PATH="$repo/.venv/bin:$PATH" JSONARGPARSE_DEPRECATION_WARNINGS=off \
        sbatch --parsable --job-name="amlit-$1" --chdir="$dir" --output="$dir/slurm-%j.out" \
        --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=30 \
        "$repo/scripts/slurm/amlit.sbatch" --trainer.max_steps="$steps" --trainer.val_check_interval="$steps" \
        "${overrides[@]}"
}

run_reference() {
    local job
    job=$(submit reference) || return 1
    reference_job=$job
    wait_for "$job" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
}

run_interrupted() {  # run_interrupted SCENARIO
    local name=$1 job log step
    job=$(submit "$name") || return 1
    eval "${name}_job=$job"
    log=$cluster/$name/slurm-$job.out
    wait_for "$job" RUNNING || return 1
    for _ in $(seq 1800); do
        step=$(latest_step "$log")
        [[ -n $step ]] && ((step >= interrupt_at)) && break
        [[ $(job_field "$job" JobState) == RUNNING ]] || break
        sleep 0.5
    done
    echo "$name: interrupting job $job at step ${step:-?} ($(date +%T))"
    if [[ $name == requeue ]]; then scontrol requeue "$job"; else scancel --signal=USR1 "$job"; fi
    # A requeued job waits 2 minutes before it may start again (EligibleTime); let it start now.
    for _ in $(seq 120); do
        [[ $(job_field "$job" JobState) == PENDING && $(job_field "$job" Restarts) -ge 1 ]] && break
        sleep 0.5
    done
    echo "$name: job $job is $(job_field "$job" JobState) ($(job_field "$job" Reason)), restarts $(job_field "$job" Restarts)"
    scontrol update JobId="$job" StartTime=now
    wait_for "$job" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL
}

failures=0
check() {  # check DESCRIPTION COMMAND...: print PASS/FAIL
    local description=$1
    shift
    if "$@"; then echo "  PASS $description"; else echo "  FAIL $description"; failures=$((failures + 1)); fi
}
results_of() { find "$cluster/$1/runs" -name results.json; }

report_run() {  # report_run NAME JOB: state, restarts, what the log says, the results file
    local name=$1 job=$2 log=$cluster/$1/slurm-$2.out results
    echo "-- $name (job $job): $(job_field "$job" JobState), exit $(job_field "$job" ExitCode), restarts $(job_field "$job" Restarts), run time $(job_field "$job" RunTime) (last start)"
    grep -aoE 'restart [0-9]+ of job [0-9]+|SIGTERM at step [0-9]+: saved [^;]*|Handling auto-requeue signal: [0-9]+|DataLoader worker \(pid [0-9]+\) is killed by signal: [A-Za-z]+|ckpt_path="last"\) is set, but there is no last checkpoint available|Restored all states from the checkpoint at [^ ]+|`Trainer.fit` stopped: [^.]*|tasks [0-9-]+: (Killed|Exited with exit code [0-9]+)' \
        "$log" | sed -E "s|$cluster/||g; s/pid [0-9]+/pid N/; s/^/   log: /" | uniq -c | sed -E 's/^ *1 //; s/^ *([0-9]+) (.*)/\2 (x\1)/'
    results=$(results_of "$name")
    echo "   results.json files: $(echo "$results" | grep -c . || true)"
    [[ -n $results ]] && "$repo/.venv/bin/python" - "$results" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
keys = ["test/lfw/acc", "test/blufr/vr@far=1e-3_mean", "test/megaface/rank1"]
print("   " + ", ".join(f"{key} {results[key]:.6f}" for key in keys if key in results))
EOF
    grep -q "COMPLETED" <<<"$(job_field "$job" JobState)" && [[ $(echo "$results" | grep -c .) == 1 ]]
}

echo "== reference: uninterrupted, 2 tasks, $steps steps"
timed "reference job" run_reference
check "reference trains and tests; one results.json" report_run reference "$reference_job"

for scenario in "${scenario_list[@]}"; do
    echo "== $scenario: interrupted after step $interrupt_at"
    timed "$scenario job, restart included" run_interrupted "$scenario"
    job_var=${scenario}_job
    job=${!job_var}
    check "$scenario: completes after a restart; one results.json" report_run "$scenario" "$job"
    check "$scenario: the restarted fit resumed from a checkpoint" \
        grep -aq "Restored all states from the checkpoint at" "$cluster/$scenario/slurm-$job.out"
    check "$scenario: same final weights and optimizer state as the reference" \
        "$repo/.venv/bin/python" "$repo/scripts/slurm/compare_checkpoints.py" \
        "$cluster/reference/runs/demo/checkpoints/last.ckpt" "$cluster/$scenario/runs/demo/checkpoints/last.ckpt"
done

if ((failures)); then
    echo "FAILED: $failures check(s); $( ((keep)) && echo "logs in $cluster" || echo "rerun with --keep to keep the logs")"
    exit 1
fi
echo "PASS: amlit.sbatch trains and tests under SLURM with 2 tasks; interrupted runs resume to the same weights"
