-- The tables and types of 040_serving.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

CREATE TYPE pgmodels.served_model AS (
    id bigint, project text, version integer, task text, runtime text, artifact bytea,
    artifact_sha256 bytea, feature_names text[], feature_types text[], labels text, nullable text[],
    array_features jsonb, imported boolean, work_per_row double precision, native_trees bytea);
COMMENT ON TYPE pgmodels.served_model IS 'internal: what serving needs to load a model version';
