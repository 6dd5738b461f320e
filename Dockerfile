# The processcontrol operator image: `processcontrol operator ...` (see deploy/manager/manager.yaml).
# Two stages: the builder installs the package and its dependencies into a virtualenv; the runtime
# copies only that virtualenv onto the same slim Python base, so no compiler, pip cache or source is shipped.
#
# BASE_IMAGE: any image with Python >= 3.11 as `python3` (with venv) and groupadd/useradd, e.g. a Debian 12 base
# built locally where no registry is reachable (tests/harness/images.py builds one with mmdebstrap). A published
# build pins it by digest, so that a retagged base cannot change what is shipped:
#   make image BASE_IMAGE=python:3.11-slim@sha256:<digest>      (docker buildx imagetools inspect python:3.11-slim)
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/processcontrol
WORKDIR /src
# The dependencies and the build backend exactly as requirements.lock pins them (`make lock`): pip refuses any file
# whose hash is not in the lock, and any package the lock does not list. A layer of its own, kept while only the
# source changes.
COPY requirements.lock ./
RUN /opt/processcontrol/bin/pip install --no-compile --require-hashes --no-deps -r requirements.lock
# Then the package itself, with the locked setuptools and nothing fetched: no build isolation, no dependencies.
COPY pyproject.toml README.md ./
COPY operator/processcontrol ./operator/processcontrol
RUN /opt/processcontrol/bin/pip install --no-compile --no-deps --no-build-isolation . \
 && /opt/processcontrol/bin/python -m compileall -q /opt/processcontrol/lib

FROM ${BASE_IMAGE}
# The same base (and so the same python3 the venv links to) as the builder.
COPY --from=builder /opt/processcontrol /opt/processcontrol
ENV PATH=/opt/processcontrol/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# 65532: the conventional "nonroot" uid/gid of distroless images, as the Deployment's runAsUser expects.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["processcontrol"]
CMD ["operator", "--all-namespaces"]
