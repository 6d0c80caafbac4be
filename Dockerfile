# gandist training image: `gandist` is the entry point; multi-process runs use torchrun from the
# same venv (`--entrypoint torchrun`, or `command:` in k8s/). See docs/cluster.md.
#
#   docker build -t gandist:0.1.0 .                       # CUDA torch wheels from PyPI (default)
#   docker build -t gandist:cpu \                          # CPU-only smoke image
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# Build args (all build-time only; none is written into the image's environment):
#   BASE             Python base image. Pin a digest (python:3.11-slim-bookworm@sha256:...) for a
#                    reproducible base; scripts/image_test.sh passes a locally built one.
#   TORCH_SPEC       torch requirements installed first, in their own layer.
#   TORCH_INDEX_URL  index for TORCH_SPEC only; empty = PyPI, whose Linux wheels carry their CUDA
#                    runtime (the host provides only the driver). The CPU index gives a small image.
#   PIP_CONSTRAINT, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT: read by pip as
#                    usual, e.g. a mirror, or a proxy's CA bundle mounted at build time.
# Versions: constraints.txt (the repository's pins, what CI tests) fixes the version of every
# package both install layers bring in, torch included, so two builds a month apart hold the
# same set; the index still picks torch's build (2.x.y+cpu and 2.x.y+cu130 both satisfy ==2.x.y).
# Never pass secrets as build args (they show in `docker history`): the W&B key reaches the
# container at run time (k8s Secret, `-e WANDB_API_KEY`).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_SPEC="torch torchvision"
ARG TORCH_INDEX_URL=""
# No defaults: an ARG without a value is unset in RUN, so pip sees these only when given.
ARG PIP_CONSTRAINT
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT

# bash with pipefail, so a failure inside a pipe fails the build (python:*-slim and a
# debootstrap base both have bash).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A venv works the same on python:*-slim (/usr/local/bin/python3) and on a Debian python3 base
# (where pip refuses to touch the system interpreter, PEP 668).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# Fixed numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER, and the manifests'
# fsGroup (k8s/) matches this gid so the run volume is writable.
RUN python3 -m venv /opt/venv \
    && groupadd --gid 1000 gandist \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash gandist \
    && install -d -o 1000 -g 1000 /workspace

# Layer 1, torch alone: the largest layer and the one that changes least. The installed versions
# are then pinned as constraints, so the dependency layer cannot swap this build of torch for
# another (a CPU torch with PyPI's torchvision fails at import).
COPY constraints.txt /opt/venv/constraints.txt
RUN printf '%s\n' "$TORCH_SPEC" | tr -s ' ' '\n' > /opt/venv/torch-requirements.txt \
    && pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        --constraint /opt/venv/constraints.txt \
        --requirement /opt/venv/torch-requirements.txt \
    && pip freeze | grep -iE '^(torch|torchvision)==' > /opt/venv/torch-constraints.txt

# Layer 2, the dependencies pyproject.toml declares: install the project from its pyproject with
# a stub package (only the __version__ the build reads, and a blank README), then drop the stub.
# This layer is rebuilt only when pyproject.toml or constraints.txt change, not on source edits.
WORKDIR /opt/gandist
COPY pyproject.toml ./
RUN mkdir gandist && echo '__version__ = "0"' > gandist/__init__.py && touch README.md \
    && pip install --no-cache-dir --constraint /opt/venv/torch-constraints.txt \
        --constraint /opt/venv/constraints.txt . \
    && pip uninstall --yes gandist \
    && rm -rf gandist README.md build ./*.egg-info

# Layer 3, the source: a plain (non-editable) install of the real package, no dependency changes.
COPY README.md ./
COPY gandist ./gandist
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && gandist --version

# Recipes, so `gandist train configs/<recipe>.yaml` works in the default working directory.
WORKDIR /workspace
COPY configs ./configs

# Any user id of group 0 (OpenShift's arbitrary uids, `docker run --user 12345:0`) may write the
# working directory (runs/, data/) and HOME (W&B's and torch's caches) as uid 1000 does; HOME is
# set, since such a uid has no home of its own.
RUN chgrp -R 0 /workspace /home/gandist && chmod -R g=u /workspace /home/gandist
ENV HOME=/home/gandist

USER 1000:1000
ENTRYPOINT ["gandist"]
CMD ["--help"]
