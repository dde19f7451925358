-- Streaming deployment: create_stream(), add_consumer(), process_stream(),
-- read_predictions(), latest_prediction(), drop_consumer(), drop_stream(),
-- stream_maintenance(), and the views pgmodels.streams, pgmodels.stream_consumers and
-- pgmodels.stream_dead_letters. How the log and positions work: sql/075. The work is in
-- python_udfs/pgmodels/stream/; workers are `pgmodels stream work`.

CREATE OR REPLACE FUNCTION @extschema@.create_stream(stream_name text, relation_name text, key_column text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    rel regclass;
BEGIN
    BEGIN
        rel := pg_catalog.to_regclass(relation_name);  -- as the caller sees it (search_path)
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'invalid relation name "%"', relation_name USING ERRCODE = '22023';
    END;
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_name USING ERRCODE = '42P01';
    END IF;
    RETURN pgmodels._stream_create(pgmodels._credential(), stream_name, rel, key_column);
END
$$;
COMMENT ON FUNCTION @extschema@.create_stream(text, text, text) IS 'makes a table a stream: from now on every row inserted into it is an event, written once into the stream''s log whatever the number of consumers; returns the stream id';

CREATE OR REPLACE FUNCTION pgmodels._add_consumer(stream_name text, consumer_name text, project_name text,
    output_table text, enrich_relation text, enrich_key text, from_beginning boolean, partitions integer)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.consumers import add; return add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning, partitions)
$$;
COMMENT ON FUNCTION pgmodels._add_consumer(text, text, text, text, text, text, boolean, integer) IS 'internal: the core of add_consumer(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.add_consumer(stream_name text, consumer_name text, project_name text,
    output_table text DEFAULT NULL, enrich_relation text DEFAULT NULL, enrich_key text DEFAULT NULL,
    from_beginning boolean DEFAULT false, partitions integer DEFAULT 1)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._add_consumer($1, $2, $3, $4, $5, $6, $7, $8), pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.add_consumer(text, text, text, text, text, text, boolean, integer) IS 'adds a model that scores a stream''s events into an output table (created when missing), optionally looking missing features up by key in a relation; starts at the stream''s end unless from_beginning; with partitions > 1, that many workers score its events at once (split by key)';

CREATE OR REPLACE FUNCTION pgmodels._process_stream(consumer_name text, max_events integer) RETURNS integer
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.process import process; return process(consumer_name, max_events)
$$;
COMMENT ON FUNCTION pgmodels._process_stream(text, integer) IS 'internal: the core of process_stream(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.process_stream(consumer_name text, max_events integer DEFAULT 1000)
RETURNS integer LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._process_stream($1, $2), pgmodels._raise_pending(NULL::integer)) $$;
COMMENT ON FUNCTION @extschema@.process_stream(text, integer) IS 'scores a consumer''s next events (at most max_events; of one partition, when it has several) in one model run, writes the predictions, moves the position and notifies subscribers, all in the caller''s transaction; returns the number of events taken (0 when there are none, in any partition no other transaction holds)';

-- A consumer's output table and channel: what subscribers need, not secret.
CREATE OR REPLACE FUNCTION pgmodels._consumer_output(consumer_name text, OUT output regclass, OUT channel text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.output, 'pgmodels_consumer_' || c.id INTO output, channel FROM pgmodels.stream_consumer c WHERE c.name = consumer_name;
    IF output IS NULL THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer_name USING ERRCODE = '42704';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_output(text) IS 'internal: a consumer''s output table and notification channel';

-- A consumer's output table and the type of its key column, checked to be a built-in key
-- type (sql/078_stream_keys.sql): reading and comparing keys converts nothing a role
-- defined. As the caller.
CREATE OR REPLACE FUNCTION pgmodels._consumer_keyed_output(consumer_name text, OUT output regclass, OUT key_type regtype)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    output := (pgmodels._consumer_output(consumer_name)).output;
    key_type := pgmodels._key_type(output, 'key');
    IF key_type IS NULL THEN
        RAISE EXCEPTION 'the key column of output table % of consumer "%" is not of a built-in key type', output,
                consumer_name
            USING ERRCODE = '42804',
                  DETAIL = format('It is %s.', coalesce((SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
                                                          FROM pg_catalog.pg_attribute a
                                                         WHERE a.attrelid = output AND a.attname = 'key'
                                                           AND a.attnum > 0 AND NOT a.attisdropped), 'missing')),
                  HINT = 'Its owner gives it the type of the stream''s key column again (ALTER TABLE ... ALTER COLUMN key TYPE ...).';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_keyed_output(text) IS 'internal: a consumer''s output table and the type of its key column, which must be a built-in key type';

CREATE OR REPLACE FUNCTION @extschema@.read_predictions(consumer_name text, after_event_id bigint, max_rows integer DEFAULT 1000)
RETURNS TABLE (event_id bigint, key text, prediction real, probabilities real[], label text, model_id bigint,
               model_version integer, event_time timestamptz, predicted_at timestamptz)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    out regclass := (pgmodels._consumer_keyed_output(consumer_name)).output;
    since bigint := 0;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be positive' USING ERRCODE = '22023';
    END IF;
    IF coalesce(after_event_id, 0) <> 0 THEN  -- as the caller, who needs SELECT on the output
        EXECUTE format('SELECT o.delivery FROM %s o WHERE o.event_id = $1', out) INTO since USING after_event_id;
        IF since IS NULL THEN
            RAISE EXCEPTION 'event % has no prediction of consumer "%"', after_event_id, consumer_name
                USING ERRCODE = '22023', HINT = 'Pass the last event id read_predictions returned, or 0 to read from the start.';
        END IF;
    END IF;
    -- the key in its text form (the output table has it in the stream's key type)
    RETURN QUERY EXECUTE format('SELECT o.event_id, CAST(o.key AS pg_catalog.text), o.prediction, o.probabilities, '
                                'o.label, o.model_id, o.model_version, o.event_time, o.predicted_at FROM %s o '
                                'WHERE o.delivery > $1 ORDER BY o.delivery LIMIT $2', out) USING since, max_rows;
END
$$;
COMMENT ON FUNCTION @extschema@.read_predictions(text, bigint, integer) IS 'a durable cursor over a consumer''s predictions in the order they were made: those after the prediction of event after_event_id (0: from the start), the key as text; for roles with SELECT on its output table';

-- latest_prediction takes the key in its own type (42, a uuid, a date: the anycompatible
-- overload, which compares it with the output's key as PostgreSQL compares the two types,
-- so 42.5 matches no bigint key) or as text (a literal such as '42', a text value: the
-- text overload, which converts it to the key's type). PostgreSQL picks the text one for
-- a quoted literal and for text, varchar and unknown parameters, the other for the rest.
CREATE OR REPLACE FUNCTION @extschema@.latest_prediction(consumer_name text, key text) RETURNS real
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o record := pgmodels._consumer_keyed_output(consumer_name);
    answer real;
BEGIN
    EXECUTE format('SELECT o.prediction FROM %s o WHERE o.key OPERATOR(pg_catalog.=) CAST($1 AS %s) '
                   'ORDER BY o.event_id DESC LIMIT 1', o.output, o.key_type) INTO answer USING key;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION @extschema@.latest_prediction(text, text) IS 'the prediction a consumer made for the latest event with this key, given as text (converted to the key''s type), or NULL while there is none yet';

CREATE OR REPLACE FUNCTION @extschema@.latest_prediction(consumer_name text, key anycompatible) RETURNS real
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o record := pgmodels._consumer_keyed_output(consumer_name);
    answer real;
BEGIN
    BEGIN
        -- a key of a string type (a text key, or an output made before 0.3.0) compares
        -- with the value's text form
        EXECUTE format('SELECT o.prediction FROM %s o WHERE o.key OPERATOR(pg_catalog.=) %s '
                       'ORDER BY o.event_id DESC LIMIT 1', o.output,
                       CASE WHEN (SELECT t.typcategory FROM pg_catalog.pg_type t WHERE t.oid = o.key_type) = 'S'
                            THEN format('CAST(CAST($1 AS pg_catalog.text) AS %s)', o.key_type) ELSE '$1' END)
            INTO answer USING key;
    EXCEPTION WHEN undefined_function THEN
        RAISE EXCEPTION 'key % is of type %, which does not compare with the keys of consumer "%"', key,
                pg_catalog.pg_typeof(key), consumer_name
            USING ERRCODE = '42883',
                  DETAIL = format('Its output table %s keeps its keys as %s.', o.output, o.key_type),
                  HINT = format('Pass the key as %s, or as text.', o.key_type);
    END;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION @extschema@.latest_prediction(text, anycompatible) IS 'the prediction a consumer made for the latest event with this key, given in its own type (42, a uuid, a date), or NULL while there is none yet';

CREATE OR REPLACE FUNCTION @extschema@.drop_consumer(consumer_name text, drop_output boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    output regclass := pgmodels._consumer_drop(pgmodels._credential(), consumer_name);
BEGIN
    IF drop_output AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = output) THEN  -- as its owner
        EXECUTE format('DROP TABLE %s', output);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.drop_consumer(text, boolean) IS 'removes a consumer and its dead letters; keeps its output table unless drop_output => true';

CREATE OR REPLACE FUNCTION @extschema@.drop_stream(stream_name text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._stream_drop(pgmodels._credential(), $1, $2) $$;
COMMENT ON FUNCTION @extschema@.drop_stream(text, boolean) IS 'removes a stream: its trigger, its log, and with cascade => true its consumers (their output tables stay)';

CREATE OR REPLACE FUNCTION @extschema@.stream_maintenance(stream_name text DEFAULT NULL) RETURNS TABLE (stream text, done text)
LANGUAGE sql VOLATILE
AS $$
    SELECT s.name, pgmodels._stream_maintain(pgmodels._credential(), s.stream_id) FROM pgmodels.streams s
     WHERE ($1 IS NULL OR s.name = $1)
       AND (pg_catalog.pg_has_role(pgmodels._me(), s.owner::regrole, 'USAGE')
            OR EXISTS (SELECT 1 FROM pgmodels.stream_consumers c WHERE c.stream = s.name))
$$;
COMMENT ON FUNCTION @extschema@.stream_maintenance(text) IS 'rotates the logs of the streams the current role owns or consumes and empties the parts every consumer is past; workers run it, and pg_cron can; in READ COMMITTED';

CREATE OR REPLACE VIEW pgmodels.streams WITH (security_barrier) AS
SELECT s.name, s.id AS stream_id, s.owner::text AS owner, s.source::text AS relation, s.key_column,
       s.current_child, s.rotated_at, s.created_at,
       (SELECT count(*) FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id) AS consumers
FROM pgmodels.stream s
WHERE pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE')
   OR pg_catalog.has_table_privilege(pgmodels._me(), s.source, 'SELECT');
COMMENT ON VIEW pgmodels.streams IS 'the streams the current role owns or may consume (it may read their table)';
GRANT SELECT ON pgmodels.streams TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_consumers WITH (security_barrier) AS
SELECT c.name AS consumer, s.name AS stream, p.name AS project, c.owner::text AS owner, c.output::text AS output,
       c.enrich::text AS enrich_relation, c.enrich_key, 'pgmodels_consumer_' || c.id AS channel, c.partitions,
       c.events_processed, lag.pending AS events_pending, clock_timestamp() - lag.oldest AS oldest_pending_age,
       c.failures, c.last_event_id, c.last_activity, c.created_at
FROM pgmodels.stream_consumer c
JOIN pgmodels.stream s ON s.id = c.stream_id
JOIN pgmodels.projects p ON p.id = c.project_id
CROSS JOIN LATERAL pgmodels._consumer_lag(c.id, pgmodels._credential()) lag
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE') OR pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_consumers IS 'per consumer the current role owns (or whose stream it owns): events processed, events pending, the oldest pending event''s age, failures (dead letters), last activity, and the channel subscribers LISTEN on';
GRANT SELECT ON pgmodels.stream_consumers TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_consumer_history WITH (security_barrier) AS
SELECT c.name AS consumer, x.at, x.events_processed, x.events_pending
FROM pgmodels.stream_consumer_sample x
JOIN pgmodels.stream_consumer c ON c.id = x.consumer_id
JOIN pgmodels.stream s ON s.id = c.stream_id
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE') OR pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_consumer_history IS 'per consumer the current role owns (or whose stream it owns): events processed and pending over the last day, sampled every 30 seconds at most while a worker runs';
GRANT SELECT ON pgmodels.stream_consumer_history TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_dead_letters WITH (security_barrier) AS
SELECT c.name AS consumer, d.event_id, d.event_key, d.event, d.error, d.error_sqlstate, d.failed_at
FROM pgmodels.stream_dead_letter d JOIN pgmodels.stream_consumer c ON c.id = d.consumer_id
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_dead_letters IS 'the events the current role''s consumers could not score, with the error; the stream went on without them';
GRANT SELECT ON pgmodels.stream_dead_letters TO PUBLIC;
