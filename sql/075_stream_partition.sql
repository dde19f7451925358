-- The functions and views of 075_stream_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- The partition of an event (the worker's read inlines the same expression).
CREATE OR REPLACE FUNCTION pgmodels._event_part(key text, id bigint, partitions integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN $3 <= 1 THEN 0
             ELSE ((pg_catalog.hashtextextended(coalesce($1, $2::text), 0) % $3 + $3) % $3)::integer END $$;
COMMENT ON FUNCTION pgmodels._event_part(text, bigint, integer) IS 'internal: the partition of a consumer''s events an event belongs to: by its key (else its id)';
