# pgmodels: Debian's PostgreSQL 15 with plpython3u, pg_cron and pgmodels, one image for
# every role (README, "Docker"):
#
#   docker build -t pgmodels .
#   docker run -d -e POSTGRES_PASSWORD=secret -p 5432:5432 -v pgdata:/var/lib/postgresql/data pgmodels
#   docker run -d -e PGMODELS_DSN=postgresql://postgres:secret@db/postgres -p 8080:8080 pgmodels serve
#   docker compose up           # the database, pgmodels serve and a stream worker (compose.yaml)
#
# Everything is installed by scripts/install.sh, the same script the local setup runs, so
# the two cannot drift: a `system` install in the build stage (the virtual environment in
# /opt/pgmodels/venv and the extension files), and in the final stage only the packages a
# server runs with (`runtime`: no compilers, no PGXS); the build stage's results are copied
# in (the extension's files and its one C library, pgmodels_native). On a machine that cannot pull from Docker Hub, BASE_IMAGE names a Debian 12 image
# made from Debian's archive (docker/base-image.sh). A directory of wheels mounted at
# build time (podman build -v DIR:/wheels --build-arg PIP_WHEELS=/wheels) is installed
# from instead of the package index.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# the package's own cluster would only be thrown away: the entrypoint makes one in $PGDATA
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/docker.conf
COPY scripts/install.sh /src/scripts/install.sh
RUN bash /src/scripts/install.sh system --packages
COPY . /src
# After the install, out of the image: what no code path imports. CatBoost's plotting
# stack (plotly, matplotlib and theirs: 180 MB; `import catboost` needs pandas, which
# stays) and the test suites of the big packages.
ARG PIP_WHEELS=
RUN if [ -n "$PIP_WHEELS" ]; then export PIP_FIND_LINKS="$PIP_WHEELS" PIP_NO_INDEX=1; fi \
 && PIP_NO_CACHE_DIR=1 bash /src/scripts/install.sh system \
 && mkdir -p /out/extension /out/lib \
 && cp -a "$(/usr/lib/postgresql/15/bin/pg_config --sharedir)"/extension/pgmodels* /out/extension/ \
 && cp -a "$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)"/pgmodels_native.so /out/lib/ \
 && /opt/pgmodels/venv/bin/pip uninstall -q -y plotly matplotlib fonttools pillow kiwisolver contourpy cycler \
      graphviz pyparsing \
 && find /opt/pgmodels/venv/lib/python3.11/site-packages -depth -type d -name tests \
         \( -path '*/sklearn/*' -o -path '*/scipy/*' -o -path '*/numpy/*' -o -path '*/pandas/*' \
            -o -path '*/onnx/backend/*' \) -exec rm -rf {} + \
 && rm -rf /root/.cache

FROM ${BASE_IMAGE}
# fixed ids, as the official image's, so a volume keeps its owner across images
RUN groupadd -r postgres --gid=999 \
 && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \
 && groupadd -r pgmodels --gid=998 \
 && useradd -r -g pgmodels --uid=998 --home-dir=/nonexistent --no-create-home --shell=/usr/sbin/nologin pgmodels \
 && mkdir -p /var/lib/postgresql /etc/postgresql-common/createcluster.d \
 && chown postgres:postgres /var/lib/postgresql \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/docker.conf
# every cluster is made from the sample: it listens beyond the container, preloads pg_cron
# (which reaches the server over the socket, where it needs no password) and imports
# pgmodels' environment, which only the configuration files may name
COPY scripts/install.sh /tmp/install.sh
RUN bash /tmp/install.sh runtime \
 && rm -rf /tmp/install.sh /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
           /var/log/apt /var/log/dpkg.log \
 && printf "%s\n" "" "# the pgmodels image" "listen_addresses = '*'" "shared_preload_libraries = 'pg_cron'" \
           "cron.host = '/var/run/postgresql'" "pgmodels.venv = '/opt/pgmodels/venv'" \
      >> /usr/share/postgresql/15/postgresql.conf.sample \
 && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql \
 && chown postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql
COPY --from=build /opt/pgmodels /opt/pgmodels
COPY --from=build /out/extension/ /usr/share/postgresql/15/extension/
COPY --from=build /out/lib/ /usr/lib/postgresql/15/lib/
COPY docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY docker/healthcheck.sh /usr/local/bin/pgmodels-healthcheck
COPY docker/dbinit.sh /usr/local/lib/pgmodels/dbinit.sh

ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/pgmodels/venv/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
# the server's fast shutdown (SIGTERM would wait for every client to leave)
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD ["pgmodels-healthcheck"]
EXPOSE 5432 8080 8081
CMD ["postgres"]
