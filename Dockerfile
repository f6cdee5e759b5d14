# One image for every component; the command picks it:
#   docker run faas gateway | dispatcher -m pull | worker tcp://dispatcher:5556 | controller
# Build on any Debian-based Python 3.11+ image: --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/faas
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common ./common
COPY gateway ./gateway
COPY dispatcher ./dispatcher
COPY worker ./worker
COPY controller ./controller
COPY faas ./faas
# Every dependency ships wheels: no compiler is needed, here or below. numpy is
# there because users' functions so often import it (slots preload it once).
RUN /opt/faas/bin/pip install ".[controller]" "numpy>=1.26"

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 faas \
 && useradd --uid 10001 --gid faas --no-create-home --shell /usr/sbin/nologin faas
COPY --from=build /opt/faas /opt/faas
ENV PATH=/opt/faas/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FAAS_LOG_JSON=true
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 5556 8080
ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
