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
# pgmodels.venv goes into the configuration file every new cluster is made from: the
# server reads it from its configuration files only (not from -c or SET).
RUN bash /opt/pgmodels/src/scripts/install.sh system \
 && rm -rf /var/lib/apt/lists/* \
 && printf "\npgmodels.venv = '/opt/pgmodels/venv'\nshared_preload_libraries = 'pg_cron'\n" \
    >> "$(pg_config --sharedir)/postgresql.conf.sample"

# pg_cron is preloaded (above); the init script creates the extensions in POSTGRES_DB.
CMD ["postgres"]
COPY scripts/docker-initdb.sh /docker-entrypoint-initdb.d/50-pgmodels.sh
