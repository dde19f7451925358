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
    control text := E'[\x01-\x1F\x7F]';
    space text;
    invisible text;
    at integer;
    ch text;
    shown text;
BEGIN
    IF kind = 'project' THEN
        -- the characters below exist only in Unicode: built from their code points (an escape
        -- in the text of this function would stop it compiling in a database in another
        -- encoding, which has its own control characters only)
        IF pg_catalog.getdatabaseencoding() = 'UTF8' THEN
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO control FROM ROWS FROM (pg_catalog.unnest(ARRAY[1, 127]), pg_catalog.unnest(ARRAY[31, 159])) WITH ORDINALITY AS r (a, b, o);
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO space FROM ROWS FROM (pg_catalog.unnest(ARRAY[160, 5760, 8192, 8232, 8233, 8239, 8287, 12288]),
                                         pg_catalog.unnest(ARRAY[160, 5760, 8202, 8232, 8233, 8239, 8287, 12288])) WITH ORDINALITY AS r (a, b, o);
            -- U+00AD U+034F U+0600-0605 U+061C U+06DD U+070F U+0890-0891 U+08E2 U+115F-1160 U+17B4-17B5
            -- U+180B-180F U+200B-200F U+202A-202E U+2060-206F U+3164 U+FE00-FE0F U+FEFF U+FFA0 U+FFF0-FFFB
            -- U+110BD U+110CD U+13430-1343F U+1BCA0-1BCA3 U+1D173-1D17A U+E0000-E0FFF
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO invisible
              FROM ROWS FROM (pg_catalog.unnest(ARRAY[173, 847, 1536, 1564, 1757, 1807, 2192, 2274, 4447, 6068, 6155, 8203, 8234, 8288, 12644,
                                65024, 65279, 65440, 65520, 69821, 69837, 78896, 113824, 119155, 917504]),
                          pg_catalog.unnest(ARRAY[173, 847, 1541, 1564, 1757, 1807, 2193, 2274, 4448, 6069, 6159, 8207, 8238, 8303, 12644,
                                65039, 65279, 65440, 65531, 69821, 69837, 78911, 113827, 119162, 921599]))
                   WITH ORDINALITY AS r (a, b, o);
        ELSE
            space := E'[\x01]';      -- nothing beyond the control characters: classes that match no
            invisible := E'[\x01]';  -- character the control class lets through
        END IF;
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
