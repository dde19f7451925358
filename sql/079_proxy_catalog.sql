-- The tables and types of 080_proxy.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

CREATE TABLE pgmodels._api_tokens (
    id            bigserial PRIMARY KEY,
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    -- regrole, so that pg_dump writes the name and restore finds the role
    role          regrole NOT NULL,
    created_by    name NOT NULL DEFAULT session_user,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels._api_tokens IS 'internal: the sha256 of each API token of pgmodels serve, and the role its requests run as';
REVOKE ALL ON pgmodels._api_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels._api_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels._api_tokens_id_seq', '');

-- Where a project's features are stored by key: one relation per project.
CREATE TABLE pgmodels.feature_sources (
    project_id     bigint PRIMARY KEY REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    -- schema and name apart, so that the proxy quotes each as an identifier
    relation_schema name NOT NULL,
    relation_name  name NOT NULL,
    key_column     name NOT NULL,
    registered_by  name NOT NULL DEFAULT session_user,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.feature_sources IS 'per project, the table or view whose rows hold its features by key, for requests that send keys instead of features';
REVOKE ALL ON pgmodels.feature_sources FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.feature_sources', '');
