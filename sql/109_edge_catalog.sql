-- The tables and types of 110_edge.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

CREATE TABLE pgmodels.edge_signing_key (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    seed        bytea NOT NULL CHECK (length(seed) = 32),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.edge_signing_key IS 'the Ed25519 key that signs edge bundles (one row, made on first use); readable by superusers only';
REVOKE ALL ON pgmodels.edge_signing_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.edge_signing_key', '');
