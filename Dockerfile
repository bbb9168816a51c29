# syntax=docker/dockerfile:1
# loadsvc image: `loadsvc serve` by default; the same image runs the reference
# target (`loadsvc target ...`) in docker-compose.yml.
#
# The base is pinned to a full Python version. For byte-for-byte reproducible
# builds pin the digest too (--build-arg PYTHON_IMAGE=...@sha256:...). A digest
# published for this tag, not verified when this was written (no registry access):
#   python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# Check it with `docker buildx imagetools inspect python:3.11.14-slim-bookworm`;
# the tag is rebuilt for Debian security updates, so its digest moves.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: a self-contained virtualenv with loadsvc and its dependencies ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/loadsvc
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest out of the context).
# README.md is left out: the long description is not used at run time.
COPY pyproject.toml ./
COPY loadsvc ./loadsvc
# Every dependency ships manylinux wheels, so no compiler is needed even here.
RUN /opt/loadsvc/bin/pip install --no-cache-dir . \
 && /opt/loadsvc/bin/python -m compileall -q /opt/loadsvc/lib

# jemalloc, for serve to run on (LD_PRELOAD below): in the soaks glibc's heap crept up over
# the target's restarts while Python's live heap stayed flat (free chunks between live ones);
# jemalloc gives its free pages back (README "Reliability", docs/reliability.md). Only the library is copied into what
# ships; it needs libc, libgcc-s1 and libstdc++6, which the base has (apt itself uses them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2=5.3.0-1 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/jemalloc \
 && cp /usr/lib/*-linux-gnu/libjemalloc.so.2 /opt/jemalloc/

# --- runtime: the virtualenv on a clean base, no build tools, not root ---
FROM ${PYTHON_IMAGE}

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 loadsvc \
 && useradd --system --uid 10001 --gid loadsvc --no-create-home \
        --home-dir /var/lib/loadsvc --shell /usr/sbin/nologin loadsvc \
 && mkdir -p /etc/loadsvc /var/lib/loadsvc \
 && chown loadsvc:loadsvc /var/lib/loadsvc

COPY --from=builder /opt/loadsvc /opt/loadsvc
COPY --from=builder /opt/jemalloc/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2

# Configuration is the environment plus an optional mounted file: set
# LOADSVC_CONFIG=/etc/loadsvc/config.yaml when mounting one, otherwise the
# built-in default configuration is used. Tokens come only from the environment
# or *_FILE secrets at run time, never from the image.
ENV PATH=/opt/loadsvc/bin:$PATH \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOADSVC_HOST=0.0.0.0 \
    LOADSVC_PORT=9100 \
    LOADSVC_HISTORY_FILE=/var/lib/loadsvc/history.jsonl

USER 10001:10001
WORKDIR /var/lib/loadsvc
EXPOSE 9100

# The slim image has no curl: probe with the interpreter that is already there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOADSVC_PORT', '9100'), timeout=4)"]

ENTRYPOINT ["loadsvc"]
CMD ["serve"]
