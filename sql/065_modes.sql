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
-- messages, so they stay plain. A project's name (kind 'project') is what people know a
-- model by, so it may hold any letters and inner spaces, but nothing that would let it pass
-- for another project's in the console, /metrics or a bundle: no leading or trailing
-- space, no two spaces in a row (a web page shows them as one), no whitespace but the
-- plain space (a tab, a no-break space), no control characters (Unicode category Cc) and
-- no invisible ones (category Cf and the other default-ignorable code points: zero-width
-- spaces and joiners, direction marks and overrides, byte order marks, variation
-- selectors, fillers, tags). A name that differs from an existing project's only in case
-- is refused where projects are made (pgmodels._check_new_project: that needs the
-- catalog).
CREATE OR REPLACE FUNCTION pgmodels._check_name(kind text, value text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    -- E'' strings: their \u escapes mean the characters whatever standard_conforming_strings says
    control constant text := E'[\u0001-\u001F\u007F-\u009F]';
    space constant text := E'[\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]';
    invisible constant text := E'[\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u115F-\u1160'
        || E'\u17B4-\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0'
        || E'\uFFF0-\uFFFB\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A'
        || E'\U000E0000-\U000E0FFF]';
    at integer;
    ch text;
    shown text;
BEGIN
    IF kind = 'project' THEN
        IF value IS NULL OR value = '' OR length(value) > 200 THEN
            RAISE EXCEPTION 'invalid project name %', coalesce(quote_literal(left(value, 40) || CASE WHEN length(value) > 40 THEN '...' ELSE '' END), 'NULL')
                USING ERRCODE = '22023', DETAIL = 'A project name is 1 to 200 characters.';
        END IF;
        at := regexp_instr(value, control || '|' || space || '|' || invisible);
        IF at > 0 THEN
            ch := substr(value, at, 1);
            -- the name as it can be shown: each such character as <U+XXXX>
            shown := (SELECT string_agg(CASE WHEN c ~ (control || '|' || space || '|' || invisible)
                                             THEN format('<U+%s>', upper(lpad(to_hex(ascii(c)), 4, '0'))) ELSE c END,
                                        '' ORDER BY i)
                        FROM regexp_split_to_table(value, '') WITH ORDINALITY AS t (c, i));
            RAISE EXCEPTION 'invalid project name %', quote_literal(shown) USING ERRCODE = '22023',
                DETAIL = format('Character %s is U+%s, %s: a project name has no control characters, no invisible '
                                'or formatting characters and no whitespace but the plain space, so that it cannot '
                                'pass for another project''s name.', at, upper(lpad(to_hex(ascii(ch)), 4, '0')),
                                CASE WHEN ch ~ control THEN 'a control character'
                                     WHEN ch ~ space THEN 'whitespace other than the plain space'
                                     ELSE 'an invisible or formatting character' END),
                HINT = 'Use letters, digits, punctuation and single spaces between words.';
        ELSIF value ~ '^ | $' THEN
            RAISE EXCEPTION 'invalid project name %', quote_literal(value) USING ERRCODE = '22023',
                DETAIL = 'A project name does not begin or end with a space, so that it cannot pass for another project''s name.',
                HINT = format('Use %s.', quote_literal(btrim(value, ' ')));
        ELSIF strpos(value, '  ') > 0 THEN
            RAISE EXCEPTION 'invalid project name %', quote_literal(value) USING ERRCODE = '22023',
                DETAIL = 'A project name has no two spaces in a row: a web page shows them as one, so that it would pass for another project''s name.',
                HINT = format('Use %s.', quote_literal(regexp_replace(value, ' {2,}', ' ', 'g')));
        END IF;
        RETURN;
    END IF;
    IF value IS NULL OR value !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name %', kind, coalesce(quote_literal(value), 'NULL') USING ERRCODE = '22023',
            DETAIL = format('A %s name is 1 to 63 letters, digits, underscores, dots or hyphens.', kind);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._check_name(text, text) IS 'internal: raises unless a job, stream or consumer name is 1 to 63 plain characters, or a project name (kind project) is 1 to 200 characters with no control, invisible or formatting characters and no whitespace but single plain spaces between words';
