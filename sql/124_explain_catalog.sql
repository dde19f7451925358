-- The tables and types of 125_explain.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

-- What explains a model version's predictions: made by train() from the fitted model (or
-- by set_reference() for a model that has none: an imported one), stored with the
-- version and checked by sha256 like its artifact. record is an .npz archive of plain
-- arrays (numbers, booleans, fixed-width text) and a JSON description, read without
-- pickle (python_udfs/pgmodels/explain/record.py). Written only by
-- pgmodels._store_explainer; read only by definer code.
CREATE TABLE pgmodels.model_explainers (
    model_id         bigint PRIMARY KEY REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    -- tree: exact path-dependent TreeSHAP; linear: exact coefficient x (value - mean);
    -- sampling: a permutation-sampling estimate, approximate
    kind             text NOT NULL CHECK (kind IN ('tree', 'linear', 'sampling')),
    exact            boolean NOT NULL CHECK (exact = (kind <> 'sampling')),
    method           text NOT NULL,
    -- what the contributions add up to: the margin (log-odds, per class), a class
    -- probability, or the regression value
    output           text NOT NULL CHECK (output IN ('margin', 'probability', 'value')),
    record           bytea NOT NULL,
    record_sha256    bytea NOT NULL CHECK (length(record_sha256) = 32),
    -- global importance: per feature, the mean absolute contribution over importance_rows
    -- rows of the training split (or of set_reference's relation)
    importance       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(importance) = 'object'),
    importance_rows  integer NOT NULL CHECK (importance_rows >= 0),
    source           text NOT NULL CHECK (source IN ('training', 'set_reference')),
    created_by       name NOT NULL DEFAULT session_user,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.model_explainers IS 'per model version: what explains its predictions (an npz record checked by sha256: trees, coefficients or sampling background), and its global feature importance';
REVOKE ALL ON pgmodels.model_explainers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.model_explainers', '');

-- What an explain core answers: parallel arrays, one element per answer row (the row of the
-- input it explains, the feature, its value as text, its contribution), which the SQL
-- wrappers unnest. The base comes first as the feature "(base)".
CREATE TYPE pgmodels.explanation AS (
    row_number integer[], feature text[], value text[], contribution double precision[]);
COMMENT ON TYPE pgmodels.explanation IS 'internal: an explanation as parallel arrays (row, feature, value, contribution), the base first as "(base)"';
