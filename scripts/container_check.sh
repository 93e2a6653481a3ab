#!/bin/bash
# Builds the amlit image from the Dockerfile with buildah (no Docker daemon needed) and runs it as its non-root user:
# `amlit --help`, then a short demo fit + test with host folders mounted at /data and /runs; checks that the image's
# torch is the tested version, that results.json and last.ckpt land in the host's runs folder, and who owns them.
#
#   sudo scripts/container_check.sh [--steps N] [--store DIR] [--keep-image] [--rebuild-base]
#
# Root is needed by debootstrap and buildah's chroot isolation; podman, buildah and debootstrap are installed with
# apt-get when missing (Debian/Ubuntu). Idempotent: the stand-in base image is built once and kept in the store;
# the amlit image, its container and the mounted folders are removed at the end (--keep-image keeps the image).
#
# The stand-in base: the real base (BASE_IMAGE in the Dockerfile, an official pytorch/pytorch CUDA image) cannot be
# pulled here, so a local one with what the Dockerfile relies on is built once: Debian 12 (debootstrap), Python 3.11
# in a venv at /opt/conda/bin on PATH (where the official images keep conda's Python 3.11), the CPU build of the
# torch version pinned in constraints.txt, WORKDIR /workspace, root as the user. The Dockerfile is then built on it
# with --build-arg BASE_IMAGE=<stand-in>. pip inside the build trusts the host's CA bundle (copied into the
# stand-in with an /etc/pip.conf), for machines behind a TLS-inspecting proxy.
set -euo pipefail

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --steps N        training steps of the demo fit (default 30; validation runs once, at the end)
  --store DIR      buildah storage and the cached stand-in base (default \${XDG_CACHE_HOME:-~/.cache}/amlit-containers;
                   about 1.1 GB once the check is done; rm -rf it to free the space)
  --keep-image     keep the built image (localhost/amlit:check) in the store
  --rebuild-base   build the stand-in base again
EOF
}

steps=30
store=${XDG_CACHE_HOME:-$HOME/.cache}/amlit-containers
keep_image=0
rebuild_base=0
while (($#)); do
    case $1 in
        --steps) steps=${2:?--steps needs a number}; shift 2 ;;
        --store) store=${2:?--store needs a folder}; shift 2 ;;
        --keep-image) keep_image=1; shift ;;
        --rebuild-base) rebuild_base=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "container_check.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "container_check.sh: --steps must be a positive integer, got $steps" >&2; exit 2; }
((EUID == 0)) || { echo "container_check.sh: run as root (debootstrap and buildah's chroot isolation need it)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
torch_version=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$repo/constraints.txt")
[[ -n $torch_version ]] || { echo "container_check.sh: no torch==X line in $repo/constraints.txt" >&2; exit 1; }
base=localhost/amlit-standin-base:torch$torch_version-cpu-bookworm
image=localhost/amlit:check
host_ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
torch_wheels=${AMLIT_TORCH_WHEELS:-/opt/wheels}  # a local torch CPU wheel, if this machine keeps one there
app_uid=1000  # the Dockerfile's USER

started=$SECONDS
exec 3>&1  # timings go to the script's stdout even when the timed command's output is redirected
timed() {  # timed LABEL COMMAND...: run it, then print how long it took
    local label=$1 t0=$SECONDS
    shift
    local status=0
    "$@" || status=$?
    echo "[time] $label: $((SECONDS - t0)) s" >&3
    return $status
}

install_tools() {
    command -v buildah >/dev/null && command -v debootstrap >/dev/null && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap >/dev/null
}

mkdir -p "$store"
# No default ulimits, and nofile given to the build: the recipe measured for sandboxes of this kind (on the development
# machine builds also ran without them on 2026-12-02); harmless elsewhere.
printf '[containers]\ndefault_ulimits = []\n' >"$store/containers.conf"
export CONTAINERS_CONF=$store/containers.conf
# vfs: the storage driver that works everywhere (overlay needs kernel support a container may lack); each layer is
# a full copy, hence the size.
bah() { buildah --root "$store/storage" --runroot "$store/runroot" --storage-driver vfs "$@"; }

container=""
base_container=""
work=""
cleanup() {
    set +e  # clean up as much as possible, whatever failed
    [[ -n $container ]] && bah rm "$container" >/dev/null 2>&1
    [[ -n $base_container ]] && bah rm "$base_container" >/dev/null 2>&1
    ((keep_image)) || bah rmi "$image" >/dev/null 2>&1
    bah rmi --prune >/dev/null 2>&1  # untagged images left by an interrupted earlier run
    [[ -n $work ]] && rm -rf "$work"
    echo "[time] total: $((SECONDS - started)) s; store $store: $(du -sh "$store" 2>/dev/null | cut -f1)"
}
trap cleanup EXIT

# Every step ends in `|| return 1`: `set -e` does not apply inside a function called as `timed ... build_base`.
build_base() {
    local m torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu)
    base_container=$(bah from scratch) && m=$(bah mount "$base_container") || return 1
    debootstrap --variant=minbase bookworm "$m" http://deb.debian.org/debian >"$store/debootstrap.log" 2>&1 \
        || { tail -20 "$store/debootstrap.log"; return 1; }
    if [[ -f $host_ca ]]; then
        install -D -m 644 "$host_ca" "$m/etc/ssl/certs/amlit-host-ca.crt" || return 1
        printf '[global]\ncert = /etc/ssl/certs/amlit-host-ca.crt\n' >"$m/etc/pip.conf" || return 1
    fi
    # The torch CPU wheel: from this machine's wheel folder when it has one, else from PyTorch's CPU index.
    if compgen -G "$torch_wheels/torch-$torch_version+cpu-*.whl" >/dev/null; then
        mkdir -p "$m/tmp/wheels" && cp "$torch_wheels"/torch-"$torch_version"+cpu-*.whl "$m/tmp/wheels/" || return 1
        torch_source=(--find-links /tmp/wheels)
    fi
    bah run --isolation=chroot "$base_container" -- sh -c '
        set -e
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends \
            python3 python3-venv >/dev/null
        apt-get clean && rm -rf /var/lib/apt/lists/*
        python3 -m venv /opt/conda
        /opt/conda/bin/pip install -q --no-cache-dir --upgrade pip
        /opt/conda/bin/pip install -q --no-cache-dir "$@"
        rm -rf /tmp/wheels' sh "${torch_source[@]}" "torch==$torch_version+cpu" || return 1
    bah config --env PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --env PYTORCH_VERSION="$torch_version" --workingdir /workspace --cmd /bin/bash \
        "$base_container" || return 1
    bah umount "$base_container" >/dev/null && bah commit --quiet --rm "$base_container" "$base" >/dev/null || return 1
    base_container=""
}

echo "== tools"
timed "install podman, buildah, debootstrap (when missing)" install_tools
echo "buildah $(buildah --version | cut -d' ' -f3); store $store; free on it: $(df -h --output=avail "$store" | tail -1)"

echo "== stand-in base $base"
((rebuild_base)) && bah rmi "$base" >/dev/null 2>&1 || true
if bah inspect --type image "$base" >/dev/null 2>&1; then
    echo "cached (built $(bah inspect --type image --format '{{.Docker.Created}}' "$base"))"
else
    timed "debootstrap Debian 12 + Python 3.11 + torch $torch_version CPU" build_base
fi

echo "== build the Dockerfile on it"
timed "buildah build" bah build --isolation=chroot --ulimit nofile=20000:20000 --build-arg BASE_IMAGE="$base" \
    -t "$image" -f "$repo/Dockerfile" "$repo" >"$store/build.log" 2>&1 \
    || { grep -v "Location 'file" "$store/build.log" | tail -30; exit 1; }
grep -E '^torch [0-9]' "$store/build.log"

container=$(bah from "$image")
# buildah run (unlike docker/podman run) gives the image's VOLUMEs anonymous volumes that hide -v mounts at the same
# paths: drop them from this container's config, so /data and /runs are the host folders.
bah config --volume /data- --volume /runs- "$container"
in_image() { bah run --isolation=chroot -v "$work/data:/data" -v "$work/runs:/runs" "$container" -- "$@"; }

echo "== run as the image's user"
work=$(mktemp -d "$store/work.XXXXXX")
mkdir -p "$work/data" "$work/runs"
chown "$app_uid:$app_uid" "$work/data" "$work/runs"  # the host folders a user with uid 1000 would mount
user=$(in_image id -u)
[[ $user == "$app_uid" ]] || { echo "FAIL: the image runs as uid $user, expected $app_uid" >&2; exit 1; }
echo "runs as uid $user; $(in_image python -c 'import torch; print("torch", torch.__version__)')"
timed "amlit --help" in_image amlit --help >"$work/help.log"
head -1 "$work/help.log"

echo "== demo fit ($steps steps) and test, /data and /runs mounted from $work"
timed "amlit fit" in_image amlit fit --config configs/demo.yaml \
    --trainer.max_steps="$steps" --trainer.val_check_interval="$steps" >"$work/fit.log" 2>&1 \
    || { tail -30 "$work/fit.log"; exit 1; }
timed "amlit test" in_image amlit test --config configs/demo.yaml \
    --ckpt_path runs/demo/checkpoints/last.ckpt >"$work/test.log" 2>&1 \
    || { tail -30 "$work/test.log"; exit 1; }

echo "== what landed on the host"
results=$work/runs/demo/results/results.json
checkpoint=$work/runs/demo/checkpoints/last.ckpt
stat -c '%u:%g %U:%G %s bytes  %n' "$results" "$checkpoint" "$work/data/synthetic"
for path in "$results" "$checkpoint"; do
    owner=$(stat -c '%u:%g' "$path")
    [[ $owner == "$app_uid:$app_uid" ]] || { echo "FAIL: $path is owned by $owner, expected $app_uid:$app_uid" >&2; exit 1; }
done
python3 - "$results" <<'EOF'
import json, math, sys
results = json.load(open(sys.argv[1]))
metrics = {key: value for key, value in results.items() if isinstance(value, float)}
assert all(math.isfinite(value) for value in metrics.values()) and 0 <= metrics["test/lfw/acc"] <= 1, metrics
shown = ["test/lfw/acc", "test/blufr/vr@far=1e-3_mean", "test/megaface/rank1"]
print(f"results.json: {len(metrics)} metrics, " + ", ".join(f"{key} {metrics[key]:.4f}" for key in shown))
EOF
echo "PASS: image built on $base, ran as uid $app_uid, results written to the mounted /runs owned by $app_uid:$app_uid"
