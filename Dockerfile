# pgmodels on the official (Debian-based) postgres image.
#
#   docker build -t pgmodels .
#   docker run -e POSTGRES_PASSWORD=secret -p 5432:5432 pgmodels
#
# All the logic is in scripts/install.sh, the same script the local setup runs, so the
# two cannot drift: it installs plpython3u, pg_cron and a virtual environment built from
# the server's Python in /opt/pgmodels/venv, and the extension files.
FROM postgres:15-bookworm

COPY . /opt/pgmodels/src
RUN bash /opt/pgmodels/src/scripts/install.sh system \
 && rm -rf /var/lib/apt/lists/*

# pg_cron must be preloaded; the init script creates the extensions in POSTGRES_DB.
CMD ["postgres", "-c", "shared_preload_libraries=pg_cron", "-c", "pgmodels.venv=/opt/pgmodels/venv"]
COPY scripts/docker-initdb.sh /docker-entrypoint-initdb.d/50-pgmodels.sh
