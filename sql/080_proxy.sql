-- Request-response serving: what `pgmodels serve` (python_udfs/pgmodels/proxy/) needs in
-- the database. API tokens, stored hashed, each naming the role its requests run as;
-- feature sources, the relation a project's features are read from by key; and the
-- metadata the Open Inference Protocol describes a model with.
--
-- The proxy holds no model and no privilege of its own: each request runs in a
-- transaction under SET LOCAL ROLE <the token's role>, so predict() and the relations of
-- the feature sources see exactly that role's grants.

-- Tokens. Only the sha256 of a token is stored; the token is shown once, by
-- create_api_token. (Tables run as they are in the 0.1.0 -> 0.2.0 upgrade too.)

-- Whether a role may manage another role's tokens: a member of it, or a superuser.
CREATE OR REPLACE FUNCTION pgmodels._may_manage_tokens(caller oid, token_role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = caller AND r.rolsuper)
        OR (EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = token_role) AND pg_has_role(caller, token_role, 'MEMBER'))
$$;
COMMENT ON FUNCTION pgmodels._may_manage_tokens(oid, oid) IS 'internal: whether a role may create and revoke API tokens for another: a member of it, or a superuser';

-- Definer: it writes the token table. The caller must be a member of the role (so a
-- token never runs as a role its creator could not SET ROLE to) or a superuser; a
-- superuser role gets no token, since its requests would bypass every grant.
CREATE OR REPLACE FUNCTION pgmodels._create_api_token(role_name name, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    target pg_roles;
    new_id bigint;
    secret text;
BEGIN
    SELECT r.* INTO target FROM pg_roles r WHERE r.rolname = role_name;
    IF target.oid IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = '42704';
    END IF;
    IF target.rolsuper THEN
        RAISE EXCEPTION 'cannot create an API token for superuser role "%"', role_name
            USING ERRCODE = '42501',
                  DETAIL = 'A token''s requests run as its role, and a superuser bypasses every privilege.',
                  HINT = 'Create a role with only what the service needs, grant it predict on the projects it serves, and make its token.';
    END IF;
    IF NOT pgmodels._may_manage_tokens(caller, target.oid) THEN
        RAISE EXCEPTION 'permission denied to create an API token for role "%"', role_name
            USING ERRCODE = '42501',
                  DETAIL = 'Only members of a role, and superusers, may create its tokens.';
    END IF;
    secret := replace(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    -- the token names its id, so that it can be listed and revoked without being shown again
    new_id := nextval('pgmodels._api_tokens_id_seq');
    INSERT INTO pgmodels._api_tokens (id, token_sha256, role)
    VALUES (new_id, sha256(convert_to('pgm_' || new_id || '_' || secret, 'UTF8')), target.oid::regrole);
    RETURN 'pgm_' || new_id || '_' || secret;
END
$$;
COMMENT ON FUNCTION pgmodels._create_api_token(name, text) IS 'internal: the core of create_api_token() (definer: only it writes the token table)';

CREATE OR REPLACE FUNCTION @extschema@.create_api_token(role_name name) RETURNS text
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._create_api_token($1, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.create_api_token(name) IS 'a new bearer token for pgmodels serve whose requests run as the role (shown once, stored hashed); for members of the role and superusers';

-- Definer: it deletes from the token table. By id, for whoever may manage the role's
-- tokens; by the token itself, for whoever holds it.
CREATE OR REPLACE FUNCTION pgmodels._revoke_api_token(token_id bigint, token text, credential text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    found pgmodels._api_tokens;
BEGIN
    IF token IS NOT NULL THEN
        DELETE FROM pgmodels._api_tokens t WHERE t.token_sha256 = sha256(convert_to(token, 'UTF8')) RETURNING * INTO found;
        RETURN found.id IS NOT NULL;
    END IF;
    SELECT t.* INTO found FROM pgmodels._api_tokens t WHERE t.id = token_id FOR UPDATE;
    IF found.id IS NULL THEN
        RETURN false;
    END IF;
    IF NOT pgmodels._may_manage_tokens(caller, found.role) THEN
        RAISE EXCEPTION 'permission denied to revoke API token %', token_id
            USING ERRCODE = '42501',
                  DETAIL = 'Only members of a token''s role, and superusers, may revoke it by id.';
    END IF;
    DELETE FROM pgmodels._api_tokens t WHERE t.id = token_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._revoke_api_token(bigint, text, text) IS 'internal: the core of revoke_api_token() (definer: only it writes the token table)';

CREATE OR REPLACE FUNCTION @extschema@.revoke_api_token(token_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._revoke_api_token($1, NULL, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.revoke_api_token(bigint) IS 'revokes an API token by its id (see pgmodels.api_tokens); true if there was one; for members of its role and superusers';

CREATE OR REPLACE FUNCTION @extschema@.revoke_api_token(token text) RETURNS boolean
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._revoke_api_token(NULL, $1, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.revoke_api_token(text) IS 'revokes an API token given itself; true if it was valid';

-- Definer: the proxy asks which role a token's requests run as. Open to PUBLIC: it
-- answers only to whoever already holds the token, and never with a superuser.
CREATE OR REPLACE FUNCTION pgmodels._api_token_role(token text) RETURNS name
LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.rolname FROM pgmodels._api_tokens t JOIN pg_roles r ON r.oid = t.role
     WHERE t.token_sha256 = sha256(convert_to(token, 'UTF8')) AND NOT r.rolsuper
$$;
COMMENT ON FUNCTION pgmodels._api_token_role(text) IS 'internal: the role an API token''s requests run as, or NULL for an unknown or revoked token';

CREATE OR REPLACE VIEW pgmodels.api_tokens WITH (security_barrier) AS
SELECT t.id, t.role::text AS role, t.created_by, t.created_at
FROM pgmodels._api_tokens t
WHERE pgmodels._may_manage_tokens(pgmodels._me(), t.role);
COMMENT ON VIEW pgmodels.api_tokens IS 'the API tokens of the roles the current role is a member of (all of them for a superuser): id, role, who created it when; never the token';
GRANT SELECT ON pgmodels.api_tokens TO PUBLIC;

-- Feature sources: the owner's. The wrapper resolves the relation in the caller's
-- search_path; the core checks ownership, the relation and the key column.
CREATE OR REPLACE FUNCTION pgmodels._register_feature_source(project_name text, relation regclass, relation_text text,
                                                             key_column text, credential text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    rel pg_class;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT c.* INTO rel FROM pg_class c WHERE c.oid = relation;
    IF rel.oid IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_text USING ERRCODE = '42P01';
    ELSIF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'a feature source cannot be a temporary relation' USING ERRCODE = '0A000',
            DETAIL = 'The proxy reads it from other sessions.';
    ELSIF rel.relkind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        RAISE EXCEPTION '"%" is not a table or view', relation_text USING ERRCODE = '42809';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel.oid AND a.attname = key_column
                                                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', key_column, relation_text USING ERRCODE = '42703';
    END IF;
    -- what every read checks again (pgmodels._feature_rows), said now; row-level security
    -- depends on the reading role, so only the read can tell
    PERFORM pgmodels._feature_source_check(rel.oid, key_column, false);
    INSERT INTO pgmodels.feature_sources (project_id, relation_schema, relation_name, key_column)
    VALUES (proj.id, rel.relnamespace::regnamespace::name, rel.relname, key_column)
    ON CONFLICT (project_id) DO UPDATE
       SET relation_schema = excluded.relation_schema, relation_name = excluded.relation_name,
           key_column = excluded.key_column, registered_by = excluded.registered_by, registered_at = excluded.registered_at;
END
$$;
COMMENT ON FUNCTION pgmodels._register_feature_source(text, regclass, text, text, text) IS 'internal: the core of register_feature_source() (definer: only it writes the feature sources)';

-- What pgmodels serve may read as a request's role. A request runs in the proxy's pooled
-- session under SET LOCAL ROLE, and a function another role wrote, run there, could RESET
-- ROLE and act as the proxy's login role (a superuser, often). Reading a view runs its
-- functions, a policy of row-level security is an expression, converting a value of a
-- type a role made can run that role's functions (its cast to json, a domain's check on
-- the key), and planning a read evaluates the relation's index expressions and
-- predicates, its statistics' expressions and (for constraint exclusion) its CHECK
-- constraints, where a function is called with constant arguments. So a feature source
-- is a table, materialized view or foreign table without partitions or child tables
-- (each would be planned too, and one can be attached while a request reads), without
-- row-level security for the reading role (reader), whose key column is of a built-in
-- type (made by initdb: oid below 16384, FirstNormalObjectId), whose other columns are of
-- built-in types or domains over them (to_jsonb reads a domain as its base type), and
-- whose indexes, statistics and CHECK constraints use only built-in functions, operators
-- and types. Returns the key column's type, as a cast names it. Volatile: each
-- query reads the catalog as it is after its own locks (the indexes are read last).
CREATE OR REPLACE FUNCTION pgmodels._feature_source_check(relation oid, key_column name, reader boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    bad record;
    key_type text;
    why constant text := 'pgmodels serve reads a feature source as the request''s role inside its own pooled '
                         'session, where a function another role wrote could take the session''s login role '
                         '(RESET ROLE); so it reads nothing that runs such a function.';
BEGIN
    SELECT c.oid, c.relkind, c.oid::regclass::text AS display INTO rel FROM pg_class c WHERE c.oid = relation;
    IF rel.oid IS NULL THEN
        RAISE EXCEPTION 'relation with OID % does not exist', relation USING ERRCODE = '42P01';
    ELSIF rel.relkind NOT IN ('r', 'p', 'm', 'f') THEN
        RAISE EXCEPTION 'feature source % is not a table', rel.display USING ERRCODE = '55000',
            DETAIL = why || ' A view runs its functions when it is read.',
            HINT = 'Register a table or a materialized view (refreshed on your schedule) instead.';
    ELSIF rel.relkind = 'p' OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = relation) THEN
        RAISE EXCEPTION 'feature source % has partitions or child tables', rel.display USING ERRCODE = '55000',
            DETAIL = why || ' Reading it plans each partition or child, with indexes and statistics of their own, '
                     'and one can be attached while a request reads.',
            HINT = 'Register a materialized view of its rows (refreshed on your schedule) instead.';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO key_type FROM pg_attribute a
     WHERE a.attrelid = relation AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid < 16384;
    IF key_type IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = key_column
                                                      AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, rel.display USING ERRCODE = '42703',
                DETAIL = 'It is the key column of the feature source.';
        END IF;
        RAISE EXCEPTION 'key column "%" of feature source % is not of a built-in type', key_column, rel.display
            USING ERRCODE = '55000',
                  DETAIL = why || ' A request''s keys are converted to the key column''s type, which for a type a role made (a domain with a check, say) runs its functions.',
                  HINT = 'Use a key column of a built-in type: an integer, text or uuid.';
    END IF;
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type INTO bad
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped
       AND (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) >= 16384
     ORDER BY a.attnum LIMIT 1;
    IF bad.attname IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of feature source % is of type %, which pgmodels serve does not read',
                bad.attname, rel.display, bad.type
            USING ERRCODE = '55000',
                  DETAIL = why || ' Reading a value of a type a role made can run that role''s functions (a cast to json).',
                  HINT = 'Give the column a built-in type (text for an enum), or register a materialized view that converts it.';
    END IF;
    IF reader AND row_security_active(relation) THEN
        RAISE EXCEPTION 'feature source % has row-level security for role %', rel.display, current_user
            USING ERRCODE = '55000',
                  DETAIL = why || ' The policies of row-level security are expressions that run when the rows are read.',
                  HINT = 'Serve keys from a table without policies for this role: a materialized view of the rows it may see, say.';
    END IF;
    -- last: what the planner evaluates (an index's expressions and predicate, a statistics
    -- object's expressions, a CHECK constraint), by what each depends on
    SELECT o.what INTO bad
      FROM (SELECT 'pg_class'::regclass AS classid, i.indexrelid AS objid,
                   format('index %s', i.indexrelid::regclass) AS what
              FROM pg_index i WHERE i.indrelid = relation
            UNION ALL
            SELECT 'pg_statistic_ext'::regclass, x.oid, format('statistics object %s', x.stxname)
              FROM pg_statistic_ext x WHERE x.stxrelid = relation
            UNION ALL
            SELECT 'pg_constraint'::regclass, c.oid, format('constraint %s', c.conname)
              FROM pg_constraint c WHERE c.conrelid = relation) o
     WHERE EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.refobjid >= 16384
                      AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, 'pg_type'::regclass))
     LIMIT 1;
    IF bad.what IS NOT NULL THEN
        RAISE EXCEPTION 'the % of feature source % uses a function, operator or type a role made', bad.what, rel.display
            USING ERRCODE = '55000',
                  DETAIL = why || ' Planning a read evaluates the expressions and predicates of a relation''s indexes, its statistics objects and its CHECK constraints.',
                  HINT = 'Use built-in functions there, or register a materialized view (refreshed on your schedule) without such indexes instead.';
    END IF;
    RETURN key_type;
END
$$;
COMMENT ON FUNCTION pgmodels._feature_source_check(oid, name, boolean) IS 'internal: the feature source''s key type, or an error (55000) for a relation pgmodels serve does not read: a view, row-level security for the reading role, a column of a type a role made';

-- The rows of a feature source for a request's keys, read as the request's role (an
-- invoker function): locked first, then checked (so no ALTER comes between the check and
-- the read), then read. One row per key and match, in the keys' order: i (from 1), found,
-- and the row as jsonb (NULL when no row has the key).
CREATE OR REPLACE FUNCTION pgmodels._feature_rows(relation_schema name, relation_name name, key_column name, keys text[])
RETURNS TABLE (i bigint, found boolean, doc jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation oid := format('%I.%I', relation_schema, relation_name)::regclass;
    key_type text;
BEGIN
    -- a lock that plans and reads nothing, then the check: what holds now holds until the
    -- transaction ends (a view, a policy, a column type all change only under a lock that
    -- conflicts with this one). The read then plans this relation alone (ONLY).
    EXECUTE format('LOCK TABLE ONLY %I.%I IN ACCESS SHARE MODE', relation_schema, relation_name);
    key_type := pgmodels._feature_source_check(relation, key_column, true);
    RETURN QUERY EXECUTE format(
        'SELECT k.i, s.%1$I IS NOT NULL, CASE WHEN s.%1$I IS NOT NULL THEN pg_catalog.to_jsonb(s) END '
        'FROM pg_catalog.unnest($1) WITH ORDINALITY AS k(key, i) '
        'LEFT JOIN ONLY %2$I.%3$I AS s ON s.%1$I = k.key::%4$s ORDER BY k.i',
        key_column, relation_schema, relation_name, key_type) USING keys;
END
$$;
COMMENT ON FUNCTION pgmodels._feature_rows(name, name, name, text[]) IS 'internal: a feature source''s rows for keys, read with the caller''s rights once pgmodels._feature_source_check allows the relation (pgmodels serve''s keyed requests)';

CREATE OR REPLACE FUNCTION @extschema@.register_feature_source(project_name text, relation_name text, key_column text)
RETURNS void LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._register_feature_source($1, pg_catalog.to_regclass($2), $2, $3, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.register_feature_source(text, text, text) IS 'names the table or view, and its key column, that pgmodels serve reads a project''s features from when a request sends keys; for the project''s owner (requests read it with their own role''s privileges)';

CREATE OR REPLACE VIEW pgmodels.project_feature_sources WITH (security_barrier) AS
SELECT p.name AS project, s.relation_schema, s.relation_name, s.key_column,
       -- by name through the catalogs, which anyone may read (to_regclass would need USAGE on
       -- the schema, and a role without it must still see its metadata, then get 403 on keys)
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = s.relation_schema AND c.relname = s.relation_name
           AND a.attname = s.key_column AND NOT a.attisdropped) AS key_type,
       s.registered_by, s.registered_at
FROM pgmodels.feature_sources s JOIN pgmodels.projects p ON p.id = s.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.project_feature_sources IS 'the feature source of each project the current role may use: relation, key column and its type';
GRANT SELECT ON pgmodels.project_feature_sources TO PUBLIC;

-- Definer: the catalog is not readable by PUBLIC. What the Open Inference Protocol's
-- model metadata shows, for a role that may use the project.
CREATE OR REPLACE FUNCTION pgmodels._model_metadata(project_name text, credential text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    IF NOT pgmodels._may(caller, proj.id, 'use') THEN
        RAISE EXCEPTION 'permission denied for project "%"', proj.name
            USING ERRCODE = '42501',
                  DETAIL = format('Role "%s" has no privilege on it.', caller::regrole),
                  HINT = format('Its owner can grant it: SELECT grant_project(%L, %L, %L).', proj.name,
                                caller::regrole::text, 'predict');
    END IF;
    RETURN jsonb_build_object(
        'name', proj.name, 'task', proj.task,
        'deployed', (SELECT m.version FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
                      WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1),
        'versions', coalesce((SELECT jsonb_agg(jsonb_build_object(
                        'version', m.version, 'model_id', m.id, 'task', m.task, 'algorithm', m.algorithm,
                        'runtime', m.runtime, 'feature_names', to_jsonb(m.feature_names),
                        'feature_types', to_jsonb(m.feature_types), 'labels', m.labels,
                        'column_types', m.training -> 'column_types') ORDER BY m.version)
                      FROM pgmodels.models m WHERE m.project_id = proj.id), '[]'::jsonb),
        'feature_source', (SELECT jsonb_build_object('schema', s.relation_schema, 'relation', s.relation_name,
                                                     'key_column', s.key_column)
                             FROM pgmodels.feature_sources s WHERE s.project_id = proj.id));
END
$$;
COMMENT ON FUNCTION pgmodels._model_metadata(text, text) IS 'internal: a project''s versions, features, labels and feature source, for a role that may use it (the Open Inference Protocol''s model metadata)';
