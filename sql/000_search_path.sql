-- Every statement of this script (and of an update's) resolves names in pg_catalog only.
-- An extension script runs with the extension's schema on its search path, and a role
-- with CREATE there could have put an operator for a pair of types pg_catalog compares
-- only by coercion (oid and regclass, bigint and numeric): a view, default or check made
-- here would bind to it, and a statement run here would run it as the superuser that
-- installs. So each object this script makes and each name it uses is schema-qualified,
-- and the path is pg_catalog's alone until the script ends (the setting is local to it).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
