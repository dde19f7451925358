-- Streams: rows inserted into a table become events that consumers (models) score as
-- they arrive (see python_udfs/pgmodels/stream/). This file holds the catalog; 076 the
-- definer functions, 077 the user's functions and views.
--
-- The log. Each stream has a private log, pgmodels.stream_<id>_log, with three child
-- tables (inheritance) that take turns, as PgQ's do: a statement-level trigger on the
-- stream's table copies the statement's rows into the current child, one row per event
-- (id, the inserting transaction's id, time, key, and the whole row as the table's row
-- type), whatever the number of consumers. Maintenance moves inserts to the next child
-- and TRUNCATEs a child once every consumer is past all of its events, so the log
-- leaves no dead rows behind.
--
-- Positions. Event ids are handed out at insert and transactions commit in any order,
-- so "the events after id N" is no position. A consumer's position is a transaction
-- snapshot: it has processed exactly the events of the transactions that snapshot sees
-- as committed. A batch is the events of the transactions a newer snapshot sees and the
-- position does not, taken in id order (and in parts of max_events: the batch's
-- snapshot and the last id done are kept until it is finished); an event whose
-- transaction is still open belongs to a later batch. So every committed event is
-- processed exactly once, whatever the order of commits.

CREATE TABLE pgmodels.stream (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    owner         regrole NOT NULL,
    source        regclass NOT NULL UNIQUE,
    key_column    name,
    current_child smallint NOT NULL DEFAULT 0 CHECK (current_child BETWEEN 0 AND 2),
    rotated_at    timestamptz NOT NULL DEFAULT now(),
    rotate_rows   bigint NOT NULL DEFAULT 100000,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.stream IS 'streams: a table whose inserted rows are events, captured into a private rotating log; read it through pgmodels.streams';

CREATE TABLE pgmodels.stream_consumer (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    stream_id        bigint NOT NULL REFERENCES pgmodels.stream (id) ON DELETE CASCADE,
    owner            regrole NOT NULL,
    project_id       bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    output           regclass NOT NULL UNIQUE,
    enrich           regclass,
    enrich_key       name,
    -- the events are split by key into this many partitions, each with its own position
    -- (stream_consumer_part), so that as many workers can score them at once
    partitions       integer NOT NULL DEFAULT 1 CHECK (partitions BETWEEN 1 AND 64),
    -- the delivery order of predictions, for read_predictions: handed out under this
    -- row's lock, held to commit, so deliveries number in commit order
    delivered        bigint NOT NULL DEFAULT 0,
    events_processed bigint NOT NULL DEFAULT 0,
    failures         bigint NOT NULL DEFAULT 0,
    last_event_id    bigint,
    last_activity    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((enrich IS NULL) = (enrich_key IS NULL))
);
COMMENT ON TABLE pgmodels.stream_consumer IS 'the models that score a stream, each with its output table and its position in the stream; read it through pgmodels.stream_consumers';

-- A consumer's position, per partition. An event belongs to partition
-- pgmodels._event_part(key, id, partitions): all the events of a key go to one, in id
-- order (events without a key are spread by id). A worker locks one partition's row for
-- its transaction (FOR UPDATE SKIP LOCKED), so workers on different partitions score at
-- once and no event is taken twice. The position: the snapshot done, and the batch in
-- progress (its snapshot, the last event id of it done).
CREATE TABLE pgmodels.stream_consumer_part (
    consumer_id    bigint NOT NULL REFERENCES pgmodels.stream_consumer (id) ON DELETE CASCADE,
    part           integer NOT NULL CHECK (part >= 0),
    done_snapshot  pg_snapshot NOT NULL,
    batch_snapshot pg_snapshot,
    batch_after    bigint NOT NULL DEFAULT 0,
    taken_at       timestamptz,
    taken_by       xid8,  -- the transaction that took it last (only it may advance it)
    PRIMARY KEY (consumer_id, part)
);
COMMENT ON TABLE pgmodels.stream_consumer_part IS 'each stream consumer''s position, per partition of its events (one row unless the consumer was added with partitions)';

-- Events a consumer could not score: the stream goes on without them.
CREATE TABLE pgmodels.stream_dead_letter (
    consumer_id    bigint NOT NULL REFERENCES pgmodels.stream_consumer (id) ON DELETE CASCADE,
    event_id       bigint NOT NULL,
    event_key      text,
    event          jsonb,
    error          text NOT NULL,
    error_sqlstate text NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_id, event_id)
);
COMMENT ON TABLE pgmodels.stream_dead_letter IS 'events a stream consumer could not score, with the error; read them through pgmodels.stream_dead_letters';

-- The backends of the workers waiting for a notification: inserts notify only while
-- there is one (a NOTIFY serializes the commits of the transactions that send one). A
-- table of its own, so that waiting never locks the stream's row.
CREATE TABLE pgmodels.stream_waiter (
    stream_id bigint NOT NULL REFERENCES pgmodels.stream (id) ON DELETE CASCADE,
    pid       integer NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, pid)
);
COMMENT ON TABLE pgmodels.stream_waiter IS 'the worker backends waiting for a stream''s next insert (not dumped: it describes running sessions)';

-- Each consumer's progress and lag over time, sampled by stream maintenance (every 30 s
-- at most, kept a day): what the console charts. Not dumped: it is recent history only.
CREATE TABLE pgmodels.stream_consumer_sample (
    consumer_id      bigint NOT NULL REFERENCES pgmodels.stream_consumer (id) ON DELETE CASCADE,
    at               timestamptz NOT NULL,
    events_processed bigint NOT NULL,
    events_pending   bigint,
    PRIMARY KEY (consumer_id, at)
);
COMMENT ON TABLE pgmodels.stream_consumer_sample IS 'samples of each stream consumer''s events processed and pending, every 30 seconds at most while a worker maintains its stream, kept a day; read them through pgmodels.stream_consumer_history';
REVOKE ALL ON pgmodels.stream_consumer_sample FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream_consumer', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream_consumer_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream_consumer_part', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.stream_dead_letter', '');
