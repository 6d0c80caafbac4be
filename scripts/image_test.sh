#!/usr/bin/env bash
# Build the Dockerfile with podman and run a 2-process CPU training smoke test inside the image
# (`make image-test`). Works without a Docker engine and without pulling from a registry: the base
# image is made locally with debootstrap and imported. Needs root (apt-get, debootstrap) and a few
# GB of disk; see docs/cluster.md "Container image".
#
# Environment (all optional):
#   IMAGE_TEST_TAG        image to build (default localhost/gandist:image-test)
#   IMAGE_TEST_BASE       base image (default: localhost/gandist-base:bookworm, made with
#                         debootstrap)
#   IMAGE_TEST_CACHE      work dir for the debootstrap tree and run outputs
#                         (default /var/tmp/gandist-image-test)
#   IMAGE_TEST_TORCH_INDEX_URL  torch index for the image (TORCH_INDEX_URL build arg). Default:
#                         the CPU index when it answers (a small image), else "" = PyPI's CUDA
#                         wheels (the real image, several GB).
#   DEBIAN_MIRROR         mirror for debootstrap (default: the one apt uses here)
set -euo pipefail

# Everything runs inside main(): bash reads the whole file first, so editing it during a long
# build cannot change what runs.
main() {
    cd "$(dirname "$0")/.."

    TAG=${IMAGE_TEST_TAG:-localhost/gandist:image-test}
    CACHE=${IMAGE_TEST_CACHE:-/var/tmp/gandist-image-test}
    BASE_TAG=localhost/gandist-base:bookworm
    CPU_INDEX=https://download.pytorch.org/whl/cpu
    CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

    say() { printf '\n== [%4ds] %s\n' "$SECONDS" "$*"; }
    die() { printf 'image-test: %s\n' "$*" >&2; exit 1; }

    # ---------------------------------------------------------------- tools
    need=()
    for tool in podman buildah runc debootstrap; do
        command -v "$tool" >/dev/null || need+=("$tool")
    done
    if ((${#need[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${need[*]}: apt-get install them, or run as root"
        say "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            podman buildah runc debootstrap uidmap >/dev/null
    fi

    mkdir -p "$CACHE"
    # crun (podman's default runtime) fails on some hosts' cgroups/rlimits; runc with explicit
    # ulimits works.
    cat >"$CACHE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF="$CACHE/containers.conf"

    # ---------------------------------------------------------------- base image
    BASE=${IMAGE_TEST_BASE:-}
    if [[ -z $BASE ]]; then
        BASE=$BASE_TAG
        if podman image exists "$BASE"; then
            say "base image $BASE exists (podman rmi it to rebuild)"
        else
            [[ $(id -u) == 0 ]] || die "debootstrap needs root (or set IMAGE_TEST_BASE)"
            mirror=${DEBIAN_MIRROR:-}
            if [[ -z $mirror ]]; then
                # The mirror apt already uses (deb822 `URIs:` or one-line `deb URL bookworm main`).
                local sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*)
                mirror=$(grep -hoE \
                    '^(URIs:[[:space:]]*|deb[[:space:]]+)[^[:space:]]+/debian/?([[:space:]]|$)' \
                    "${sources[@]}" 2>/dev/null | head -n1 | awk '{print $2}' || true)
                mirror=${mirror:-http://deb.debian.org/debian}
            fi
            root="$CACHE/rootfs"
            # An interrupted debootstrap leaves proc/sys mounted in the tree: never delete
            # through them.
            umount -R "$root" 2>/dev/null || true
            rm -rf --one-file-system "$root"
            say "debootstrap bookworm (python3, venv, ca-certificates) from $mirror"
            debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
                bookworm "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
                || { tail -n 20 "$CACHE/debootstrap.log"; die "debootstrap failed"; }
            rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
            say "importing the base as $BASE ($(du -sh "$root" | cut -f1))"
            tar -C "$root" -c . | podman import - "$BASE" >/dev/null
            rm -rf --one-file-system "$root"
        fi
    fi

    # ---------------------------------------------------------------- image
    if [[ -n ${IMAGE_TEST_TORCH_INDEX_URL+set} ]]; then
        torch_index=$IMAGE_TEST_TORCH_INDEX_URL
    elif curl -fsS -m 10 -o /dev/null "$CPU_INDEX/torch/" 2>/dev/null; then
        torch_index=$CPU_INDEX
    else
        torch_index=""
        say "the CPU torch index is unreachable: installing PyPI's CUDA wheels (full size image)"
    fi

    build_args=(--build-arg "BASE=$BASE" --build-arg "TORCH_INDEX_URL=$torch_index")
    if [[ -f $CA_BUNDLE ]]; then
        # Registries may sit behind a TLS proxy whose CA only this host trusts: lend the host's
        # bundle to pip for the build (a volume + ARG: nothing of this machine enters the image).
        build_args+=(-v "$CA_BUNDLE:/etc/ssl/host-ca.crt:ro")
        build_args+=(--build-arg PIP_CERT=/etc/ssl/host-ca.crt)
    fi
    say "building $TAG from $BASE (torch index: ${torch_index:-PyPI})"
    build_start=$SECONDS
    # --format docker: the OCI format has no SHELL instruction (buildah would ignore ours).
    podman build --format docker --network=host --layers "${build_args[@]}" -t "$TAG" . 2>&1 \
        | tee "$CACHE/build.log"
    size=$(podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')
    say "image built in $((SECONDS - build_start)) s; size $size"

    # ---------------------------------------------------------------- checks
    user=$(podman run --rm --entrypoint id "$TAG" -u)
    [[ $user != 0 ]] || die "the image runs as root"
    podman run --rm "$TAG" --version

    runs="$CACHE/runs"
    rm -rf "$runs"
    mkdir -p "$runs"
    chown "$user" "$runs" 2>/dev/null || chmod 0777 "$runs"
    say "2-process CPU training smoke test (torchrun, no network)"
    smoke_start=$SECONDS
    podman run --rm --network=none --shm-size=1g -v "$runs:/workspace/runs" \
        --entrypoint torchrun "$TAG" --nproc_per_node 2 \
        -m gandist train configs/wgan_gp_digits.yaml train.steps=6 train.batch_size=16 \
        model.g_width=8 model.d_width=8 train.sample_every=3 \
        train.run_name=smoke tracking.wandb=disabled
    python3 - "$runs/smoke" <<'EOF'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
status = json.loads((run / "status.json").read_text())
assert status["state"] == "completed", status
latest = run / "checkpoints" / "latest"
ckpt = run / "checkpoints" / latest.read_text().strip()  # `latest` names the checkpoint
state = json.loads((ckpt / "trainer_state.json").read_text())
assert state["step"] == 6 and state["world_size"] == 2, state
print(f"checkpoint {ckpt.name}: step {state['step']}, world_size {state['world_size']}")
EOF
    say "an arbitrary user id of group 0 (OpenShift), no volume: trains, W&B offline"
    podman run --rm --network=none --user 12345:0 "$TAG" \
        train configs/dcgan_digits.yaml train.steps=2 train.batch_size=16 model.g_width=8 \
        model.d_width=8 train.sample_every=2 tracking.wandb=offline 2>&1 | tee "$CACHE/uid.log"
    grep -q "done: 2 steps" "$CACHE/uid.log" || die "the arbitrary-uid run did not finish"
    if grep -qiE "permission denied|could not log" "$CACHE/uid.log"; then
        die "the arbitrary-uid run could not write somewhere (see $CACHE/uid.log)"
    fi
    say "smoke test passed in $((SECONDS - smoke_start)) s; image-test OK (total ${SECONDS} s)"
}

main "$@"
