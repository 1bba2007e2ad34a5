# One image for every service of docker-compose.yml: scheduler, workers and
# the trainer run the same Python, dask, distributed, numpy and pyarrow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY docker/constraints.txt ./docker/constraints.txt
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY jobs ./jobs
# bokeh: the scheduler's dashboard on 8787
RUN pip install --constraint docker/constraints.txt . bokeh \
    && useradd --create-home --uid 1000 pipeline \
    && mkdir -p /data /runs /scratch \
    && chown pipeline:pipeline /data /runs /scratch

# new named volumes take this ownership, so the non-root user can write them
USER pipeline
EXPOSE 8786 8787
CMD ["pipeline", "--help"]
