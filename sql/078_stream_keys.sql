-- Streams: the key's type. The log keeps each event's key as text (sql/075: the capture
-- trigger writes it in a fixed form, ISO dates in UTC and exact floats, and partitions
-- hash it); a consumer's output table keeps it in the type of the stream's key column, so
-- that it joins back to the stream's table and orders as a number or a date does. The key
-- goes back to its type where the output row is written (python_udfs/pgmodels/stream/
-- process.py), as the consumer's owner, and only into a built-in type: a built-in type's
-- input function is all that runs, never a cast a role defined.

-- The type of a column that may be an output's key: a built-in base type (only a superuser
-- can add a cast from or to one) of the number, string, date and time, boolean or other
-- built-in (uuid, bytea, ...) categories, with a default btree operator class (an output
-- orders and indexes its keys); NULL for any other type (and for no such column).
CREATE OR REPLACE FUNCTION pgmodels._key_type(relation oid, column_name name) RETURNS regtype
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t.oid::pg_catalog.regtype FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
       AND t.oid < 16384  -- FirstNormalObjectId: made by initdb
       AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typtype = 'b'
       AND t.typcategory IN ('N', 'S', 'D', 'U', 'B')
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_am m ON m.oid = o.opcmethod
                    WHERE m.amname = 'btree' AND o.opcdefault
                      AND (o.opcintype = t.oid
                           OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                                       WHERE c.castsource = t.oid AND c.casttarget = o.opcintype
                                         AND c.castmethod = 'b' AND c.castcontext = 'i')))
$$;
COMMENT ON FUNCTION pgmodels._key_type(oid, name) IS 'internal: the type of a column if it can be the key of a stream consumer''s output (a built-in base type with a btree order), else NULL';

-- An output table made before 0.3.0 keeps every key as text. The upgrade gives its key
-- column the type of the stream's key column (ALTER TABLE ... USING key::type), as the
-- consumer's owner. Rewriting a table re-checks its constraints and rebuilds its indexes,
-- and code the owner wrote there would run inside the upgrade's session, whose session
-- user is a superuser: SET ROLE is no wall there (the code can RESET ROLE). So only a
-- table where the rewrite evaluates nothing of the owner's is converted: no CHECK,
-- foreign key or exclusion constraint, no index on an expression or with a predicate, no
-- generated column, no child table; the others keep text and a NOTICE gives their owner
-- the statement to run. An output whose stream's table or key column is gone, or whose
-- keys do not convert (a key column whose type changed since, a view over the output that
-- uses the column), keeps text too, and a NOTICE says why; latest_prediction and
-- read_predictions work on it as they did. Not a definer: the upgrade (a superuser) runs
-- it. Returns what it did, NULL when there was nothing to do.
CREATE OR REPLACE FUNCTION pgmodels._consumer_key_retype(consumer_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    want text;
    before text := current_setting('role');
    owner_name name;
    message text;
BEGIN
    SELECT x.name, x.owner, x.output, s.name AS stream, s.source, s.key_column INTO c
      FROM pgmodels.stream_consumer x JOIN pgmodels.stream s ON s.id = x.stream_id
     WHERE x.id = consumer_id;
    IF c.name IS NULL OR c.key_column IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.output AND a.attname = 'key' AND a.attnum > 0
                         AND NOT a.attisdropped AND a.atttypid = 'text'::regtype) THEN
        RETURN NULL;  -- no such consumer, a stream without a key (text is right), or a key not text
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO want FROM pg_attribute a
     WHERE a.attrelid = c.source AND a.attname = c.key_column AND a.attnum > 0 AND NOT a.attisdropped
       AND pgmodels._key_type(c.source, c.key_column) IS NOT NULL;
    IF want IS NULL THEN
        IF pgmodels._key_type(c.source, c.key_column) IS NULL
           AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.source AND a.attname = c.key_column
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RETURN NULL;  -- a key type without an order (json, say): its output keeps text, as a new one would
        END IF;
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('The table of stream "%s" or its key column "%s" is gone: the type its keys had is unknown.',
                                  c.stream, c.key_column);
        RETURN 'kept text: the stream''s table or key column is gone';
    ELSIF want = 'text' THEN
        RETURN NULL;
    END IF;
    SELECT r.rolname INTO owner_name FROM pg_roles r WHERE r.oid = c.owner;
    SELECT string_agg(w.what, ', ' ORDER BY w.what) INTO message FROM (
        SELECT 'a CHECK, foreign key or exclusion constraint' AS what FROM pg_constraint k
         WHERE k.conrelid = c.output AND k.contype OPERATOR(pg_catalog.=) ANY (ARRAY['c', 'f', 'x']::"char"[])
        UNION SELECT 'an index on an expression or with a predicate' FROM pg_index i
         WHERE i.indrelid = c.output AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
        UNION SELECT 'a generated column' FROM pg_attribute a
         WHERE a.attrelid = c.output AND a.attgenerated OPERATOR(pg_catalog.<>) ''::"char" AND NOT a.attisdropped
        UNION SELECT 'child tables' FROM pg_inherits h WHERE h.inhparent = c.output) w;
    IF message IS NOT NULL THEN
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('It has %s: converting it would run its owner''s code inside the upgrade''s session.',
                                  message),
                  HINT = format('latest_prediction and read_predictions work on it as it is; its owner can convert it: ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s.',
                                c.output::regclass, want, want);
        RETURN format('kept text: it has %s', message);
    END IF;
    BEGIN
        IF owner_name IS NULL THEN
            RAISE EXCEPTION 'its owner, role %, is gone', c.owner::oid;
        END IF;
        PERFORM set_config('role', owner_name, true);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s', c.output::regclass, want, want);
        PERFORM set_config('role', before, true);
    EXCEPTION WHEN OTHERS THEN  -- undone, the role included
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('Its key column could not become %s, the type of the key column "%s" of stream "%s": %s.',
                                  want, c.key_column, c.stream, message),
                  HINT = format('latest_prediction and read_predictions work on it as it is; once its keys convert, its owner runs ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s.',
                                c.output::regclass, want, want);
        RETURN format('kept text: %s', message);
    END;
    RETURN format('key is now %s', want);
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_key_retype(bigint) IS 'internal: gives a consumer''s output table made before 0.3.0 (keys as text) the type of its stream''s key column, as the consumer''s owner, or says in a NOTICE why it keeps text; run by the upgrade';

-- The upgrade from 0.2.0 converts the output tables of the consumers it has (a new
-- install has none; a later run finds nothing left to convert).
DO $keys$
BEGIN
    PERFORM pgmodels._consumer_key_retype(x.id) FROM pgmodels.stream_consumer x ORDER BY x.id;
END
$keys$;
