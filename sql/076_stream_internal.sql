-- Streams: the definer functions. They create and drop each stream's private log and
-- its capture trigger, write the catalog, and hand a consumer's owner its position; the
-- user's functions (077) run as the caller and pass a credential.

CREATE OR REPLACE FUNCTION pgmodels._stream_log(stream_id bigint, child integer DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'stream_' || stream_id || '_log' || coalesce('_' || child, '') $$;
COMMENT ON FUNCTION pgmodels._stream_log(bigint, integer) IS 'internal: the name (in schema pgmodels) of a stream''s log, or of one of its three children';

-- Whether a role may read a stream's events: it may read the stream's table, and the
-- table has no row-level security unless the role owns it (the log holds whole rows, to
-- which no policy applies). Asked by the log's own policy at every read, so a revoke or
-- a policy added later takes effect at once.
CREATE OR REPLACE FUNCTION pgmodels._may_consume(stream_id bigint, role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pgmodels.stream s JOIN pg_class c ON c.oid = s.source
                    WHERE s.id = $1 AND has_table_privilege($2, s.source, 'SELECT')
                      AND (NOT c.relrowsecurity OR pg_has_role($2, c.relowner, 'USAGE')))
$$;
COMMENT ON FUNCTION pgmodels._may_consume(bigint, oid) IS 'internal: whether a role may read a stream''s events (the log''s row-level policy)';

-- The stream a caller owns (or, with may_consume, may consume: it may read its table).
CREATE OR REPLACE FUNCTION pgmodels._stream_get(credential text, stream_name text, may_consume boolean DEFAULT false)
RETURNS pgmodels.stream
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream;
BEGIN
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.name = stream_name;
    IF s.id IS NULL THEN
        RAISE EXCEPTION 'stream "%" does not exist', stream_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.streams for the streams there are.';
    END IF;
    IF may_consume AND NOT pgmodels._may_consume(s.id, caller) THEN
        RAISE EXCEPTION 'permission denied for stream "%"', stream_name USING ERRCODE = '42501',
            DETAIL = format('Consuming a stream reads its events, the rows of %s: it needs SELECT on it (and, if it has row-level security, to own it).', s.source);
    ELSIF NOT may_consume AND NOT pg_has_role(caller, s.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of stream "%"', stream_name USING ERRCODE = '42501',
            DETAIL = format('Stream "%s" belongs to role "%s".', stream_name, s.owner);
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_get(text, text, boolean) IS 'internal: a stream its caller owns (or may consume), or an error';

-- What each stream's capture trigger checks at every statement, before it writes
-- anything (and create_stream once). The trigger runs with the definer's rights, and
-- PostgreSQL runs a cast, a domain's check or an operator with the rights of whoever
-- evaluates it: so the trigger may only evaluate conversions that are built in. It
-- converts two things. The key column, named in its body, into text: that column, as
-- the table has it now (it can be dropped and added again with another type, and a
-- type its owner made can gain a cast at any time), must be of a built-in base type,
-- whose text form is built in (only a superuser can add a cast from or to one). And the
-- inserted rows into the table's row type, named in its body: that name must still be
-- the table's row type (renamed, the table leaves its name free for a type someone
-- else makes, with casts of its own); the row type's own columns need no conversion.
-- Not a definer itself: the trigger calls it with the definer's rights.
CREATE OR REPLACE FUNCTION pgmodels._stream_capture_check(source oid, key_column name, row_type text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_type oid;
    display text := source::regclass::text;
BEGIN
    IF row_type IS NOT NULL
       AND to_regtype(row_type) IS DISTINCT FROM (SELECT c.reltype FROM pg_class c WHERE c.oid = source) THEN
        RAISE EXCEPTION 'the table of stream "%" was renamed', (SELECT s.name FROM pgmodels.stream s WHERE s.source = _stream_capture_check.source)
            USING ERRCODE = '55000',
                  DETAIL = format('Its capture trigger writes rows of type %s; the table is now called %s.', row_type, display),
                  HINT = 'Rename the table back, or drop the stream and create it again.';
    END IF;
    IF key_column IS NULL THEN
        RETURN;
    END IF;
    SELECT a.atttypid INTO key_type FROM pg_attribute a
     WHERE a.attrelid = source AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF key_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, display USING ERRCODE = '42703',
            DETAIL = 'It is the stream''s key column.';
    ELSIF NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = key_type AND t.oid < 16384  -- FirstNormalObjectId
                         AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b'
                         AND t.typcategory IN ('N', 'S', 'D', 'U', 'B')) THEN
        RAISE EXCEPTION 'key column "%" of % is of type %, which cannot be a stream''s key', key_column, display,
                key_type::regtype
            USING ERRCODE = '42804',
                  DETAIL = 'A stream''s key is a column of a built-in integer, numeric, text, uuid, boolean, date or timestamp type: its events'' keys are made with the rights of the extension''s owner, and no conversion but a built-in one runs there.',
                  HINT = 'Give the key column such a type again, or drop the stream and make it on a key column of such a type.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_capture_check(oid, name, text) IS 'internal: refuses (42804, 42703, 55000) a stream''s table whose key column is not of a built-in key type, or whose row type is no longer the one its capture trigger names; checked by the trigger at every statement';

-- A stream's capture trigger and its function, made (or made again, on an upgrade) from
-- the catalog: one INSERT ... SELECT per statement into the current child of the log,
-- after _stream_capture_check; a NOTIFY only while a worker waits. The function is a
-- definer so that producers cannot write the log; it evaluates no code a role defined
-- (see _stream_capture_check). Made during an extension script (an upgrade), the
-- function would belong to the extension: it is handed back to the stream.
CREATE OR REPLACE FUNCTION pgmodels._stream_capture_define(stream_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pgmodels.stream;
    capture text := format('stream_%s_capture', stream_id);
    trigger_name text := 'pgmodels_stream_' || stream_id;
    row_type text;
    branches text := '';
    body text;
BEGIN
    SELECT st.* INTO STRICT s FROM pgmodels.stream st WHERE st.id = stream_id;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source) THEN
        RETURN;  -- its table is gone: nothing to capture
    END IF;
    row_type := format_type((SELECT c.reltype FROM pg_class c WHERE c.oid = s.source), NULL);
    FOR child IN 0..2 LOOP
        branches := branches || format(
            '%s current = %s THEN INSERT INTO pgmodels.%I (ev_id, ev_txid, ev_time, ev_key, ev_row) '
            'SELECT pg_catalog.nextval(%L), pg_catalog.pg_current_xact_id(), pg_catalog.now(), %s, ROW(n.*)::%s '
            'FROM pgmodels_new_rows n; ',
            CASE WHEN child = 0 THEN 'IF' ELSE 'ELSIF' END, child, pgmodels._stream_log(s.id, child),
            'pgmodels.' || quote_ident(pgmodels._stream_log(s.id) || '_seq'),
            CASE WHEN s.key_column IS NULL THEN 'NULL' ELSE format('(n.%I)::text', s.key_column) END,
            row_type);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = s.source AND t.tgname = trigger_name) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, s.source);
    END IF;
    IF to_regprocedure(format('pgmodels.%I()', capture)) IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION pgmodels.%I()', capture);
    END IF;
    -- The key's text form is fixed whatever the inserting session's settings (ISO dates,
    -- times in UTC, floats exact): it converts back to the key's type in any session
    -- (sql/078_stream_keys.sql), and a key hashes to one partition.
    -- The body is made first and handed over as one quoted literal (%L): the names in it
    -- (the table's, its row type's, the key column's) are a role's, and inside a
    -- dollar-quoted body a name holding the closing tag would end it and add statements.
    body := format(
        'DECLARE current smallint; waiting boolean; '
        'BEGIN '
        'PERFORM pgmodels._stream_capture_check(%s, %L, %L); '
        'SELECT s.current_child, EXISTS (SELECT 1 FROM pgmodels.stream_waiter w WHERE w.stream_id = s.id) '
        'INTO current, waiting FROM pgmodels.stream s WHERE s.id = %s; '
        '%s END IF; '
        'IF waiting THEN PERFORM pg_catalog.pg_notify(%L, ''''); END IF; '
        'RETURN NULL; '
        'END', s.source::oid, s.key_column, row_type, s.id, branches, trigger_name);
    EXECUTE format('CREATE FUNCTION pgmodels.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp SET DateStyle = ''ISO, YMD'' SET TimeZone = ''UTC'' '
                   'SET extra_float_digits = 1 AS %L', capture, body);
    IF EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = format('pgmodels.%I()', capture)::regprocedure AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION pgmodels DROP FUNCTION pgmodels.%I()', capture);
    END IF;
    EXECUTE format('COMMENT ON FUNCTION pgmodels.%I() IS %L', capture,
                   format('captures the rows inserted into %s as events of pgmodels stream "%s"', s.source, s.name));
    EXECUTE format('REVOKE ALL ON FUNCTION pgmodels.%I() FROM PUBLIC', capture);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pgmodels_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgmodels.%I()', trigger_name, s.source, capture);
END
$$;
COMMENT ON FUNCTION pgmodels._stream_capture_define(bigint) IS 'internal: (re)makes a stream''s capture trigger and its definer function from the catalog';

CREATE OR REPLACE FUNCTION pgmodels._stream_create(credential text, stream_name text, source oid, key_column name)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    rel record;
    s pgmodels.stream;
    log text;
    key_type oid;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'create_stream(text, text, text)', 'create_stream', 'may make streams');
    PERFORM pgmodels._check_name('stream', stream_name);
    SELECT c.oid, c.relkind, c.relowner, c.oid::regclass::text AS display INTO rel FROM pg_class c WHERE c.oid = source;
    IF rel.relkind IS NULL OR rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', coalesce(rel.display, source::text) USING ERRCODE = '42809',
            DETAIL = 'A stream''s events are the rows inserted into a table.';
    ELSIF NOT pg_has_role(caller, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', rel.display USING ERRCODE = '42501',
            DETAIL = 'Making a table a stream adds a trigger to it.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = source AND c.relpersistence = 't') THEN
        RAISE EXCEPTION 'a temporary table cannot be a stream' USING ERRCODE = '0A000',
            DETAIL = 'It ends with its session, and its stream with it.';
    END IF;
    IF key_column IS NOT NULL THEN
        SELECT a.atttypid INTO key_type FROM pg_attribute a
         WHERE a.attrelid = source AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped;
        IF key_type IS NULL THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, rel.display USING ERRCODE = '42703',
                DETAIL = 'It was given as the stream''s key column.';
        END IF;
        PERFORM pgmodels._stream_capture_check(source, key_column, NULL);
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.stream st WHERE st.name = stream_name) THEN
        RAISE EXCEPTION 'stream "%" already exists', stream_name USING ERRCODE = '42710';
    END IF;
    SELECT st.name INTO log FROM pgmodels.stream st WHERE st.source = _stream_create.source;
    IF log IS NOT NULL THEN
        RAISE EXCEPTION 'table % is already the table of stream "%"', rel.display, log USING ERRCODE = '42710',
            HINT = 'Add consumers to that stream: it serves any number of them.';
    END IF;
    INSERT INTO pgmodels.stream (name, owner, source, key_column) VALUES (stream_name, caller::regrole, source, key_column)
    RETURNING * INTO s;
    log := pgmodels._stream_log(s.id);
    EXECUTE format('CREATE SEQUENCE pgmodels.%I', log || '_seq');
    EXECUTE format('CREATE TABLE pgmodels.%I (ev_id bigint NOT NULL, ev_txid xid8 NOT NULL, ev_time timestamptz NOT NULL, '
                   'ev_key text, ev_row %s)', log, format_type((SELECT c.reltype FROM pg_class c WHERE c.oid = source), NULL));
    EXECUTE format('COMMENT ON TABLE pgmodels.%I IS %L', log, format('the event log of pgmodels stream "%s"', stream_name));
    -- Consumers' owners read the log directly (SELECT is granted at add_consumer), and only
    -- while they may read the stream's table: a policy asks at every read.
    EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ROW LEVEL SECURITY', log);
    EXECUTE format('CREATE POLICY consumers ON pgmodels.%I FOR SELECT '
                   'USING ((SELECT pgmodels._may_consume(%s, (SELECT r.oid FROM pg_catalog.pg_roles r '
                   'WHERE r.rolname = current_user))))', log, s.id);
    FOR child IN 0..2 LOOP
        EXECUTE format('CREATE TABLE pgmodels.%I () INHERITS (pgmodels.%I)', pgmodels._stream_log(s.id, child), log);
        EXECUTE format('COMMENT ON TABLE pgmodels.%I IS %L', pgmodels._stream_log(s.id, child),
                       format('part %s of the event log of pgmodels stream "%s" (inserts go to one part at a time; '
                              'maintenance empties the parts every consumer is past)', child, stream_name));
        EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ROW LEVEL SECURITY', pgmodels._stream_log(s.id, child));
        EXECUTE format('CREATE INDEX ON pgmodels.%I (ev_txid)', pgmodels._stream_log(s.id, child));
        EXECUTE format('CREATE INDEX ON pgmodels.%I (ev_id)', pgmodels._stream_log(s.id, child));
    END LOOP;
    PERFORM pgmodels._stream_capture_define(s.id);
    RETURN s.id;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_create(text, text, oid, name) IS 'internal: the core of create_stream(): the catalog row, the private log and its children, the capture trigger (definer: it writes what producers and consumers cannot)';

-- Every stream's capture trigger made again from the definitions above: an upgrade
-- brings the triggers of streams an earlier release made up to date (a new install has
-- no streams yet).
DO $capture$
BEGIN
    PERFORM pgmodels._stream_capture_define(s.id) FROM pgmodels.stream s ORDER BY s.id;
END
$capture$;

CREATE OR REPLACE FUNCTION pgmodels._stream_drop(credential text, stream_name text, cascade boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pgmodels.stream := pgmodels._stream_get(credential, stream_name);
    consumers text;
BEGIN
    SELECT string_agg(c.name, ', ' ORDER BY c.name) INTO consumers FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id;
    IF consumers IS NOT NULL AND NOT cascade THEN
        RAISE EXCEPTION 'stream "%" has consumers', stream_name USING ERRCODE = '2BP01',
            DETAIL = format('Consumers: %s.', consumers),
            HINT = 'Drop them first, or call drop_stream(..., cascade => true); their output tables stay.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pgmodels_stream_' || s.id, s.source);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS pgmodels.%I()', format('stream_%s_capture', s.id));
    EXECUTE format('DROP TABLE IF EXISTS pgmodels.%I CASCADE', pgmodels._stream_log(s.id));
    EXECUTE format('DROP SEQUENCE IF EXISTS pgmodels.%I', pgmodels._stream_log(s.id) || '_seq');
    DELETE FROM pgmodels.stream st WHERE st.id = s.id;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_drop(text, text, boolean) IS 'internal: the core of drop_stream(): removes the trigger, the log and the catalog rows';

CREATE OR REPLACE FUNCTION pgmodels._consumer_add(credential text, consumer_name text, stream_name text, project_name text,
                                                  output oid, enrich oid, enrich_key name, from_beginning boolean,
                                                  partitions integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream := pgmodels._stream_get(credential, stream_name, true);
    proj pgmodels.projects;
    c pgmodels.stream_consumer;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'add_consumer(text, text, text, text, text, text, boolean, integer)',
                                    'add_consumer', 'may score streams');
    PERFORM pgmodels._check_name('consumer', consumer_name);
    IF partitions IS NULL OR partitions NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 64' USING ERRCODE = '22023',
            DETAIL = format('It was %s.', coalesce(partitions::text, 'NULL')),
            HINT = 'One partition per worker that should score this consumer''s events at once.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    ELSIF NOT pgmodels._may(caller, proj.id, 'predict') THEN
        RAISE EXCEPTION 'permission denied for project "%"', project_name USING ERRCODE = '42501',
            DETAIL = format('Role "%s" has no predict privilege on it.', caller::regrole);
    END IF;
    IF output = s.source OR NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = output AND r.relkind IN ('r', 'p')
                                           AND pg_has_role(caller, r.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of table %', output::regclass USING ERRCODE = '42501',
            DETAIL = 'A consumer writes only an output table of its own role, never its stream''s table.';
    END IF;
    IF enrich IS NOT NULL AND NOT has_column_privilege(caller, enrich, enrich_key, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', enrich::regclass USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.name = consumer_name) THEN
        RAISE EXCEPTION 'consumer "%" already exists', consumer_name USING ERRCODE = '42710';
    ELSIF EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.output = _consumer_add.output) THEN
        RAISE EXCEPTION 'table % is already the output of another consumer', output::regclass USING ERRCODE = '42710';
    END IF;
    INSERT INTO pgmodels.stream_consumer (name, stream_id, owner, project_id, output, enrich, enrich_key, partitions)
    VALUES (consumer_name, s.id, caller::regrole, proj.id, output, enrich, enrich_key, partitions)
    RETURNING * INTO c;
    INSERT INTO pgmodels.stream_consumer_part (consumer_id, part, done_snapshot)
    SELECT c.id, g, CASE WHEN from_beginning THEN '1:1:'::pg_snapshot ELSE pg_current_snapshot() END
      FROM generate_series(0, partitions - 1) g;
    -- the consumer's owner reads the events it may read anyway (it has SELECT on the table)
    EXECUTE format('GRANT SELECT ON pgmodels.%I TO %I', pgmodels._stream_log(s.id), caller::regrole::text);
    RETURN c.id;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_add(text, text, text, text, oid, oid, name, boolean, integer) IS 'internal: the core of add_consumer() (definer: it writes the catalog and lets the consumer''s owner read the log)';

-- A consumer and its stream, for its owner (a member will do, but to take: only the
-- owner itself); with take, also one partition's position:
-- the partition with a batch in progress, else the one taken longest ago, that no other
-- transaction holds and that is not in skip (the ones this call found empty), locked for
-- the caller's transaction (when there is none, nothing is returned), with a batch
-- started when none is in progress.
CREATE OR REPLACE FUNCTION pgmodels._consumer_get(credential text, consumer_name text, take boolean,
                                                  skip integer[] DEFAULT '{}')
RETURNS TABLE (consumer_id bigint, stream_id bigint, project text, source oid, key_column name, output oid,
               enrich oid, enrich_key name, partitions integer, part integer, done_snapshot pg_snapshot,
               batch_snapshot pg_snapshot, batch_after bigint, log text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    c pgmodels.stream_consumer;
    s pgmodels.stream;
    p pgmodels.stream_consumer_part;
BEGIN
    SELECT x.* INTO c FROM pgmodels.stream_consumer x WHERE x.name = consumer_name;
    IF c.id IS NULL THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.stream_consumers for the consumers you own.';
    ELSIF NOT pg_has_role(caller, c.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of consumer "%"', consumer_name USING ERRCODE = '42501',
            DETAIL = format('Consumer "%s" belongs to role "%s".', consumer_name, c.owner);
    END IF;
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = c.stream_id;
    IF take THEN
        -- processing runs the owner's code (a trigger or default of its output table, a
        -- cast of a column's type it made) with the rights of the role that processes: so
        -- only the owner itself may, as only a batch job's owner runs the job
        IF caller <> c.owner THEN
            RAISE EXCEPTION 'consumer "%" is processed as role "%"', consumer_name, c.owner USING ERRCODE = '42501',
                DETAIL = 'Processing reads the events and writes the output table with exactly the consumer''s owner''s rights, and runs only as that role: another role''s rights would run code the owner wrote (a trigger on its output table, a cast of a type it made) with them.',
                HINT = format('Log in as role "%s" to process it (pgmodels stream work --dsn with that role).', c.owner);
        END IF;
        IF NOT pgmodels._may_consume(s.id, caller) THEN
            RAISE EXCEPTION 'permission denied for stream "%"', s.name USING ERRCODE = '42501',
                DETAIL = format('Consuming a stream reads its events, the rows of %s: it needs SELECT on it (and, if it has row-level security, to own it).', s.source);
        END IF;
        SELECT x.* INTO p FROM pgmodels.stream_consumer_part x
         WHERE x.consumer_id = c.id AND x.part <> ALL (coalesce(skip, '{}'))
         ORDER BY x.batch_snapshot IS NULL, x.taken_at NULLS FIRST, x.part
         LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF p.consumer_id IS NULL THEN
            RETURN;  -- other workers hold every partition
        END IF;
        UPDATE pgmodels.stream_consumer_part x
           SET batch_snapshot = coalesce(x.batch_snapshot, pg_current_snapshot()),
               batch_after = CASE WHEN x.batch_snapshot IS NULL THEN 0 ELSE x.batch_after END,
               taken_at = clock_timestamp(), taken_by = pg_current_xact_id()
         WHERE x.consumer_id = p.consumer_id AND x.part = p.part RETURNING x.* INTO p;
    END IF;
    RETURN QUERY SELECT c.id, s.id, (SELECT j.name FROM pgmodels.projects j WHERE j.id = c.project_id), s.source::oid,
                        s.key_column, c.output::oid, c.enrich::oid, c.enrich_key, c.partitions, p.part, p.done_snapshot,
                        p.batch_snapshot, p.batch_after, pgmodels._stream_log(s.id);
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_get(text, text, boolean, integer[]) IS 'internal: a consumer for its owner; take locks one of its partitions for this transaction and starts a batch there';

-- Records what process_stream did, in the transaction that wrote the predictions: the
-- partition's position (only the transaction that took it, with _consumer_get, may) and,
-- when it handled events, the consumer's counters. Returns the delivery number after
-- which the scored events' predictions go: the consumer's row then stays locked to
-- commit, so a partition scored in parallel numbers its deliveries after this one's (it
-- waits for this commit to write, not to score). A call that handled no events takes no
-- lock on the consumer.
CREATE OR REPLACE FUNCTION pgmodels._consumer_advance(credential text, consumer_id bigint, part integer,
                                                      last_event_id bigint, finished boolean, scored bigint,
                                                      failed bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '10s'
AS $$
DECLARE
    base bigint;
BEGIN
    IF scored IS NULL OR failed IS NULL OR scored < 0 OR failed < 0 THEN
        RAISE EXCEPTION 'the counts of scored and failed events must not be negative' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.stream_consumer_part p
       SET done_snapshot = CASE WHEN finished THEN p.batch_snapshot ELSE p.done_snapshot END,
           batch_snapshot = CASE WHEN finished THEN NULL ELSE p.batch_snapshot END,
           batch_after = CASE WHEN finished THEN 0 ELSE greatest(p.batch_after, coalesce(_consumer_advance.last_event_id, 0)) END
      FROM pgmodels.stream_consumer c
     WHERE p.consumer_id = _consumer_advance.consumer_id AND p.part = _consumer_advance.part
       AND p.batch_snapshot IS NOT NULL AND c.id = p.consumer_id AND p.taken_by = pg_current_xact_id()
       AND pg_has_role(pgmodels._verify_caller(credential), c.owner, 'USAGE');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'partition % of consumer % has no batch in progress for this transaction', part, consumer_id
            USING ERRCODE = '55000';
    END IF;
    IF scored + failed = 0 THEN
        RETURN NULL;  -- nothing to number or count
    END IF;
    BEGIN
        UPDATE pgmodels.stream_consumer c
           SET delivered = c.delivered + scored,
               events_processed = c.events_processed + scored + failed,
               failures = c.failures + failed,
               last_event_id = CASE WHEN _consumer_advance.last_event_id IS NULL THEN c.last_event_id
                                    ELSE greatest(c.last_event_id, _consumer_advance.last_event_id) END,
               last_activity = now()
         WHERE c.id = consumer_id
        RETURNING c.delivered - scored INTO base;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'consumer % is held by a transaction that scored its events and has not ended', consumer_id
            USING ERRCODE = '55P03',
                  DETAIL = 'Predictions are numbered in commit order, so partitions wait for each other''s commit; this one waited 10 seconds.',
                  HINT = 'End transactions that call process_stream promptly (workers run each call on its own). This call''s work was undone; nothing is lost.';
    END;
    RETURN base;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_advance(text, bigint, integer, bigint, boolean, bigint, bigint) IS 'internal: moves a consumer partition''s position past the events process_stream handled, in the same transaction as their predictions; returns the delivery number they follow';

CREATE OR REPLACE FUNCTION pgmodels._consumer_dead_letters(credential text, consumer_id bigint, event_ids bigint[],
                                                           event_keys text[], events jsonb[], errors text[],
                                                           sqlstates text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer c WHERE c.id = consumer_id
                      AND pg_has_role(pgmodels._verify_caller(credential), c.owner, 'USAGE')) THEN
        RAISE EXCEPTION 'consumer % is not this role''s', consumer_id USING ERRCODE = '42501';
    END IF;
    INSERT INTO pgmodels.stream_dead_letter (consumer_id, event_id, event_key, event, error, error_sqlstate)
    SELECT consumer_id, u.i, u.k, u.e, u.m, u.s FROM unnest(event_ids, event_keys, events, errors, sqlstates) AS u(i, k, e, m, s)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_dead_letters(text, bigint, bigint[], text[], jsonb[], text[], text[]) IS 'internal: records the events a consumer could not score';

CREATE OR REPLACE FUNCTION pgmodels._consumer_drop(credential text, consumer_name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    SELECT g.consumer_id, g.stream_id, g.output, x.owner INTO c
      FROM pgmodels._consumer_get(credential, consumer_name, false) g
      JOIN pgmodels.stream_consumer x ON x.id = g.consumer_id;
    DELETE FROM pgmodels.stream_consumer x WHERE x.id = c.consumer_id;
    IF NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.stream_id = c.stream_id AND x.owner = c.owner)
       AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = c.owner) THEN
        EXECUTE format('REVOKE SELECT ON pgmodels.%I FROM %I', pgmodels._stream_log(c.stream_id), c.owner::regrole::text);
    END IF;
    RETURN c.output::regclass;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_drop(text, text) IS 'internal: the core of drop_consumer()';

-- A worker about to wait for events (wait = true) or at work again: inserts into the
-- streams of these consumers notify while any worker waits.
CREATE OR REPLACE FUNCTION pgmodels._stream_waiting(credential text, consumer_names text[], wait boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
BEGIN
    IF wait THEN
        INSERT INTO pgmodels.stream_waiter (stream_id, pid)
        SELECT DISTINCT c.stream_id, pg_backend_pid() FROM pgmodels.stream_consumer c
         WHERE c.name = ANY (consumer_names) AND pg_has_role(caller, c.owner, 'USAGE')
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM pgmodels.stream_waiter w WHERE w.pid = pg_backend_pid();
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_waiting(text, text[], boolean) IS 'internal: registers this backend as a worker waiting for the streams of these consumers (inserts then notify), or no longer';

-- Whether a transaction that inserted into these streams' logs is still open: its events
-- are not visible yet and its commit may not notify (the capture trigger looked for
-- waiting workers at insert), so a worker about to wait looks again soon instead.
CREATE OR REPLACE FUNCTION pgmodels._stream_inflight(stream_ids bigint[]) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted
                      AND l.pid <> pg_catalog.pg_backend_pid()
                      -- the children's names as pgmodels._stream_log makes them: this runs as
                      -- the worker's role, which may not execute that internal function
                      AND l.relation IN (SELECT pg_catalog.to_regclass('pgmodels.stream_' || i || '_log_' || c)
                                           FROM pg_catalog.unnest(stream_ids) i, pg_catalog.generate_series(0, 2) c))
$$;
COMMENT ON FUNCTION pgmodels._stream_inflight(bigint[]) IS 'internal: whether another backend has inserted into these streams'' logs in a transaction still open';

-- Keeps each log small and free of dead rows: a child every consumer is past is emptied
-- with TRUNCATE (under a lock taken first, so that no insert slips in between the check
-- and the TRUNCATE; in READ COMMITTED, so that the check sees every commit before the
-- lock), and inserts move on to the next child once the current one holds rotate_rows
-- events or a minute's worth. Definer: it alters the private logs; it only removes events
-- no consumer needs, for the stream's owner and its consumers' owners.
--
-- Its cost follows what there is to do, not the size of the log, and is bounded per call.
-- The positions are read once per child, as three values over every partition of every
-- consumer: the oldest xmin, the oldest xmax, and the transactions any of them saw
-- running. pg_visible_in_snapshot(t, p) is t < xmin(p), or t < xmax(p) and t not running
-- in p; so every position sees every event of a child exactly when its newest event
-- (read from the ev_txid index) is older than every xmax and none of its events belongs
-- to one of those running transactions (an index probe each), with no event read. A
-- child that must stay is unlocked at once (its lock is taken in a subtransaction that is
-- then rolled back); a TRUNCATE keeps its lock to the end of the call, after which only
-- the rotation's index reads run. The lag samples come first, under no lock of the log's
-- children, and within a budget of 0.2 s (counting a consumer's pending events takes time
-- in proportion to them): the consumers left are sampled by the next calls, the oldest
-- sample first. The answer says what was done and what remains.
CREATE OR REPLACE FUNCTION pgmodels._stream_maintain(credential text, stream_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream;
    started timestamptz := clock_timestamp();
    horizon xid8;    -- every position sees every transaction older than this
    bound xid8;      -- no position sees a transaction from this one on
    running xid8[];  -- the transactions some position saw running: it does not see them
    newest xid8;
    log text;
    child integer;
    span bigint;
    passed boolean;
    due record;
    sampled integer := 0;
    unsampled integer := 0;
    notes text[] := '{}';
BEGIN
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = stream_id;
    IF s.id IS NULL OR NOT (pg_has_role(caller, s.owner, 'USAGE') OR EXISTS (
            SELECT 1 FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id AND pg_has_role(caller, c.owner, 'USAGE'))) THEN
        RAISE EXCEPTION 'permission denied for stream %', stream_id USING ERRCODE = '42501',
            DETAIL = 'A stream''s log is maintained by its owner and its consumers'' owners.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'stream maintenance needs READ COMMITTED' USING ERRCODE = '25001',
            DETAIL = 'It must see every commit made before it locks a part of the log.';
    END IF;
    -- workers that died while waiting
    DELETE FROM pgmodels.stream_waiter w
     WHERE w.stream_id = s.id AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.pid);
    -- a sample of each consumer's progress and lag, at most every 30 seconds, kept a day
    -- (the console draws throughput and lag over the last hour from them)
    FOR due IN SELECT x.id, x.events_processed FROM pgmodels.stream_consumer x
              WHERE x.stream_id = s.id
                AND NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer_sample y
                                 WHERE y.consumer_id = x.id AND y.at > now() - interval '30 seconds')
              ORDER BY (SELECT max(y.at) FROM pgmodels.stream_consumer_sample y WHERE y.consumer_id = x.id) NULLS FIRST,
                       x.id
    LOOP
        IF sampled > 0 AND clock_timestamp() - started > interval '200 milliseconds' THEN
            unsampled := unsampled + 1;
            CONTINUE;
        END IF;
        INSERT INTO pgmodels.stream_consumer_sample (consumer_id, at, events_processed, events_pending)
        VALUES (due.id, now(), due.events_processed, (pgmodels._consumer_lag(due.id, credential)).pending)
        ON CONFLICT DO NOTHING;
        sampled := sampled + 1;
    END LOOP;
    DELETE FROM pgmodels.stream_consumer_sample x
     WHERE x.at < now() - interval '1 day'
       AND x.consumer_id IN (SELECT c.id FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id);
    FOR child IN SELECT g FROM generate_series(0, 2) g WHERE g <> s.current_child LOOP
        log := pgmodels._stream_log(s.id, child);
        BEGIN
            EXECUTE format('LOCK TABLE pgmodels.%I IN ACCESS EXCLUSIVE MODE NOWAIT', log);
            -- every event's transaction has ended (a running one would hold a lock on the child)
            EXECUTE format('SELECT max(e.ev_txid) FROM pgmodels.%I e', log) INTO newest;
            IF newest IS NULL THEN
                RAISE SQLSTATE 'PGMS0';  -- empty: nothing to do here, and the lock goes
            END IF;
            -- the positions, read under the lock: they only move forward
            SELECT min(pg_snapshot_xmin(p.done_snapshot)), min(pg_snapshot_xmax(p.done_snapshot)),
                   (SELECT coalesce(array_agg(DISTINCT r), '{}')
                      FROM pgmodels.stream_consumer x JOIN pgmodels.stream_consumer_part q ON q.consumer_id = x.id
                     CROSS JOIN LATERAL pg_snapshot_xip(q.done_snapshot) r
                     WHERE x.stream_id = s.id AND r <= newest)
              INTO horizon, bound, running
              FROM pgmodels.stream_consumer x JOIN pgmodels.stream_consumer_part p ON p.consumer_id = x.id
             WHERE x.stream_id = s.id;
            IF horizon IS NULL OR newest < horizon THEN
                passed := true;  -- no consumer, or every event older than every position
            ELSIF newest >= bound THEN
                passed := false;  -- its newest event is after some position
            ELSE
                EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM pgmodels.%I e WHERE e.ev_txid = ANY ($1))', log)
                    INTO passed USING running;
            END IF;
            IF NOT passed THEN
                RAISE SQLSTATE 'PGMS1';  -- a consumer is behind: it stays, and the lock goes
            END IF;
            EXECUTE format('TRUNCATE pgmodels.%I', log);
            notes := notes || format('truncated %s', child);
        EXCEPTION
            WHEN lock_not_available THEN
                notes := notes || format('%s kept: in use', child);
            WHEN SQLSTATE 'PGMS0' THEN
                NULL;
            WHEN SQLSTATE 'PGMS1' THEN
                notes := notes || format('%s kept: a consumer is behind', child);
        END;
    END LOOP;
    EXECUTE format('SELECT max(e.ev_id) - min(e.ev_id) + 1 FROM pgmodels.%I e', pgmodels._stream_log(s.id, s.current_child))
        INTO span;
    child := (s.current_child + 1) % 3;
    IF coalesce(span, 0) > 0 AND (span >= s.rotate_rows OR s.rotated_at < now() - interval '1 minute') THEN
        EXECUTE format('SELECT max(e.ev_txid) FROM pgmodels.%I e', pgmodels._stream_log(s.id, child)) INTO newest;
        IF newest IS NULL THEN  -- compare and set: another maintainer may have rotated
            UPDATE pgmodels.stream st SET current_child = child, rotated_at = now()
             WHERE st.id = s.id AND st.current_child = s.current_child;
            IF FOUND THEN
                notes := notes || format('inserts go to %s', child);
            END IF;
        ELSE
            notes := notes || format('inserts stay in %s until %s is emptied', s.current_child, child);
        END IF;
    END IF;
    IF unsampled > 0 THEN
        notes := notes || format('%s consumers'' lag to sample in the next calls', unsampled);
    END IF;
    RETURN array_to_string(notes, '; ');
END
$$;
COMMENT ON FUNCTION pgmodels._stream_maintain(text, bigint) IS 'internal: rotates a stream''s log and truncates the children every consumer is past';

-- How far behind a consumer is: events not yet processed, and the oldest one's time, in
-- one pass over the log (each event checked against its partition's position). Definer
-- (it reads the log); answers only a role that owns the consumer or its stream, as the
-- credential proves (inside a definer function current_user is the definer).
CREATE OR REPLACE FUNCTION pgmodels._consumer_lag(consumer_id bigint, credential text, OUT pending bigint,
                                                  OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    c pgmodels.stream_consumer;
    s pgmodels.stream;
BEGIN
    SELECT x.* INTO c FROM pgmodels.stream_consumer x WHERE x.id = consumer_id;
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = c.stream_id;
    IF c.id IS NULL OR NOT (pg_has_role(caller, c.owner, 'USAGE') OR pg_has_role(caller, s.owner, 'USAGE')) THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*), min(l.ev_time) FROM pgmodels.%I l
                      JOIN pgmodels.stream_consumer_part p ON p.consumer_id = $1
                       AND p.part = CASE WHEN $2 = 1 THEN 0 ELSE pgmodels._event_part(l.ev_key, l.ev_id, $2) END
                     WHERE l.ev_txid >= (SELECT min(pg_snapshot_xmin(q.done_snapshot))
                                           FROM pgmodels.stream_consumer_part q WHERE q.consumer_id = $1)
                       AND l.ev_txid >= pg_snapshot_xmin(p.done_snapshot)
                       AND NOT pg_visible_in_snapshot(l.ev_txid, p.done_snapshot)
                       AND NOT (l.ev_id <= p.batch_after AND p.batch_snapshot IS NOT NULL
                                AND pg_visible_in_snapshot(l.ev_txid, p.batch_snapshot))', pgmodels._stream_log(s.id))
        INTO pending, oldest USING c.id, c.partitions;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_lag(bigint, text) IS 'internal: a consumer''s pending events and the oldest one''s time, for the roles that own it or its stream';
