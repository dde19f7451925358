-- Progress of long work: train(), batch runs, stream catch-up (python_udfs/pgmodels/progress.py).
--
-- The backend doing the work sends each stage to its client as a message (NOTICE, or the
-- level the setting pgmodels.progress_level names: info, log, debug, warning, off) and
-- publishes it in its application_name, as SET LOCAL would:
--     pgmodels <operation> <stage>[ <step>/<steps>] <name>
-- PostgreSQL puts application_name in shared memory when it is set, so other sessions see
-- the stage in pg_stat_activity while the work runs, with nothing committed; the end of
-- the transaction gives the backend its own application_name back. This view reads the
-- stages back, for the backends whose queries the current role may see in
-- pg_stat_activity (its own roles', or all with pg_read_all_stats). application_name
-- keeps 63 bytes, so a long name is cut short there (the messages carry it whole).
CREATE OR REPLACE VIEW pgmodels.progress AS
SELECT a.pid,
       a.usename::text AS role,
       a.datname::text AS database,
       m[1] AS operation,
       m[5] AS name,
       m[2] AS stage,
       m[3]::bigint AS step,
       NULLIF(m[4], '')::bigint AS steps,
       a.query_start AS started,
       pg_catalog.clock_timestamp() - a.query_start AS elapsed,
       a.query
FROM pg_catalog.pg_stat_activity a
CROSS JOIN LATERAL pg_catalog.regexp_match(a.application_name,
                                           '^pgmodels (train|batch|stream) ([a-z_]+)(?: ([0-9]+)/([0-9]*))? (.+)$') m
WHERE m IS NOT NULL
  AND (pg_catalog.pg_has_role(a.usesysid, 'USAGE') OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE'));
COMMENT ON VIEW pgmodels.progress IS 'the long work running now (train, batch runs, stream catch-up) of the backends whose activity the current role may see: operation, project, job or consumer name, stage, step of steps (a search''s candidate, a batch chunk, a catch-up''s events), since when';
GRANT SELECT ON pgmodels.progress TO PUBLIC;
