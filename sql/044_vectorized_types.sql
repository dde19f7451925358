-- The tables and types of 045_vectorized.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

CREATE TYPE pgmodels.scored_rows AS (
    model_id bigint, model_version integer, predictions real[], labels text[], probabilities real[], classes integer,
    contributions jsonb[], model_ids bigint[], model_versions integer[]);
COMMENT ON TYPE pgmodels.scored_rows IS 'internal: the answers for a block of rows, in row order; probabilities flattened, classes per row; contributions (0.3.0) per row as feature -> contribution with "(base)"; model_ids and model_versions (0.3.0) per row when a rollout split the block between two versions';
