-- What the deployment modes (batch jobs, streams) share in SQL: the checks their
-- definer cores make before they create anything.

-- Refuses a role without EXECUTE on a user-facing function: the cores are open to
-- PUBLIC, so they check that the caller may run the function they serve.
CREATE OR REPLACE FUNCTION pgmodels._require_grant(caller oid, signature text, what text, who text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT pg_catalog.has_function_privilege(caller, '@extschema@.' || signature, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', what USING ERRCODE = '42501',
            HINT = format('An administrator grants EXECUTE on %s() to the roles that %s.', what, who);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._require_grant(oid, text, text, text) IS 'internal: raises unless the role may execute the user-facing function';

-- The names of jobs, streams and consumers: they end up in pg_cron entries, channels and
-- messages, so they stay plain.
CREATE OR REPLACE FUNCTION pgmodels._check_name(kind text, value text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value IS NULL OR value !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name %', kind, coalesce(quote_literal(value), 'NULL') USING ERRCODE = '22023',
            DETAIL = format('A %s name is 1 to 63 letters, digits, underscores, dots or hyphens.', kind);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._check_name(text, text) IS 'internal: raises unless a job, stream or consumer name is 1 to 63 plain characters';
