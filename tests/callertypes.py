"""The attacker's kit of tests/test_caller_types.py: a probe function that counts the
role it runs as, and types a role may make whose casts and checks call it.

PostgreSQL runs a cast, a domain's check, a policy or a trigger with the rights of
whoever evaluates it. The probe counts each run in one of two sequences, which a
rollback does not undo (a statement that fails after the probe ran still counts):
``probe_ok`` when it runs as the attacker itself, ``probe_bad`` when it runs as any other
role or with a superuser's rights. It also tries to become the session's login role
(RESET ROLE) and to make the attacker a superuser, so that a test sees a door even where
the count alone would not."""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ["text", "float8", "numeric"]
CONTEXTS = ["implicit", "assignment"]

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
CREATE_STREAM = "create_stream(text, text, text)"
ADD_CONSUMER = "add_consumer(text, text, text, text, text, text, boolean, integer)"
CREATE_BATCH_JOB = "create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)"
MONITOR = "monitor(text, text, text, text, boolean)"


@dataclass
class Kit:
    admin: object    # a superuser connection
    conn: object     # the attacker's own connection (LOGIN, and the scenario's grants)
    role: str
    schema: str      # the attacker's schema: everything of the kit is made there

    @classmethod
    def install(cls, admin, conn, role: str, schema: str) -> "Kit":
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
        kit = cls(admin, conn, role, schema)
        s = schema
        conn.execute(f"GRANT USAGE ON SCHEMA {s} TO PUBLIC")
        conn.execute(f"CREATE SEQUENCE {s}.probe_ok")
        conn.execute(f"CREATE SEQUENCE {s}.probe_bad")
        conn.execute(f"GRANT USAGE, UPDATE ON SEQUENCE {s}.probe_ok, {s}.probe_bad TO PUBLIC")
        conn.execute(f"CREATE TABLE {s}.seen (at text, who name, session_role name, superuser boolean)")
        conn.execute(f"GRANT INSERT ON {s}.seen TO PUBLIC")
        conn.execute(f"""
            CREATE FUNCTION {s}.probe(at text) RETURNS boolean LANGUAGE plpgsql AS $$
            DECLARE
                me name;
                super boolean;
            BEGIN
                BEGIN EXECUTE 'RESET ROLE'; EXCEPTION WHEN OTHERS THEN NULL; END;
                SELECT r.rolname, r.rolsuper INTO me, super FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
                IF me = '{role}' AND NOT super THEN
                    PERFORM pg_catalog.nextval('{s}.probe_ok');
                ELSE
                    PERFORM pg_catalog.nextval('{s}.probe_bad');
                END IF;
                BEGIN
                    INSERT INTO {s}.seen VALUES (at, me, session_user, super);
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
                BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN true;
            END $$""")
        return kit

    def enum(self, name: str, target: str | None = None, context: str | None = None) -> str:
        """An enum ('1', '2') of the attacker's, with a cast to json (to_jsonb calls it)
        and, given a target, one to the target in the context (implicit, assignment);
        each calls the probe. Returns its qualified name."""
        s, typ = self.schema, f"{self.schema}.{name}"
        self.conn.execute(f"CREATE TYPE {typ} AS ENUM ('1', '2')")
        casts = [("json", None)] + ([(target, context)] if target else [])
        for to, how in casts:
            fn = f"{s}.{name}_to_{to}"
            label = f"(CASE WHEN pg_catalog.enum_eq($1, '1'::{typ}) THEN '1' ELSE '2' END)"
            value = f"pg_catalog.to_json({label})" if to == "json" else f"{label}::{to}"  # json: a string
            self.conn.execute(f"""
                CREATE FUNCTION {fn}({typ}) RETURNS {to} LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM {s}.probe('cast {name} to {to}');
                    RETURN {value};
                END $$""")
            self.conn.execute(f"CREATE CAST ({typ} AS {to}) WITH FUNCTION {fn}({typ})"
                              + {None: "", "implicit": " AS IMPLICIT", "assignment": " AS ASSIGNMENT"}[how])
        return typ

    def domain(self, name: str, base: str = "float8") -> str:
        """A domain over a built-in type whose check calls the probe."""
        typ = f"{self.schema}.{name}"
        self.conn.execute(f"CREATE DOMAIN {typ} AS {base} CHECK ({self.schema}.probe('check of {name}'))")
        return typ

    def trigger(self, table: str) -> None:
        """A statement trigger on one of the attacker's tables that calls the probe."""
        s = self.schema
        self.conn.execute(f"""CREATE OR REPLACE FUNCTION {s}.on_write() RETURNS trigger LANGUAGE plpgsql AS $$
                              BEGIN PERFORM {s}.probe('trigger on ' || TG_TABLE_NAME); RETURN NULL; END $$""")
        self.conn.execute(f"CREATE TRIGGER probe AFTER INSERT OR UPDATE ON {table} "
                          f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.on_write()")

    def count(self, which: str) -> int:
        last, called = self.admin.execute(f"SELECT last_value, is_called FROM {self.schema}.probe_{which}").fetchone()
        return last if called else 0

    def seen(self) -> list[tuple]:
        return self.admin.execute(f"SELECT at, who, session_role, superuser FROM {self.schema}.seen").fetchall()

    def assert_never_ran_as_another(self) -> None:
        """The probe never ran but as the attacker, and the attacker is no superuser."""
        assert self.count("bad") == 0, self.seen()
        assert self.admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [self.role]).fetchone() == (False,)

    def teardown(self) -> None:
        """Undo a door that opened (so the role can be dropped), drop what the attacker
        made through pgmodels, then the schema."""
        a = self.admin
        a.execute(f"ALTER ROLE {self.role} NOSUPERUSER")
        for (stream,) in a.execute("SELECT name FROM pgmodels.stream WHERE owner::text = %s", [self.role]).fetchall():
            a.execute("SELECT drop_stream(%s, true)", [stream])
        for (job,) in a.execute("SELECT name FROM pgmodels.batch_job WHERE owner::text = %s", [self.role]).fetchall():
            a.execute("SELECT drop_batch_job(%s)", [job])
        for (mon,) in a.execute("SELECT id FROM pgmodels.monitor WHERE owner::text = %s", [self.role]).fetchall():
            a.execute("SELECT drop_monitor(%s)", [mon])
        a.execute(f"DROP SCHEMA {self.schema} CASCADE")
