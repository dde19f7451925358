"""Why each function that runs with another role's rights cannot run code a role wrote.

PostgreSQL runs a cast, an operator, a domain's check, a default or index expression, a
policy of row-level security and a view's functions with the rights of whoever evaluates
them. A SECURITY DEFINER function of pgmodels runs as the extension's owner, a superuser
on most installs: if it converted a value of a type a role made, or read or wrote a
relation a role controls, that role's code would run as the superuser. So each one here
says why it does neither (tests/test_definer_audit.py checks the list against the
installed extension). Trigger functions are listed too: a trigger runs wherever a row
arrives.

Each entry: the function's regprocedure (no space after commas) -> (why it evaluates no
code a role defined, and why PUBLIC may execute it, or None when PUBLIC may not). A
definer function made at run time is keyed with {id} for the number in its name.
"""

from __future__ import annotations

# the phrases most reasons share
CATALOG = "reads and writes only pgmodels' catalog tables"
BUILTIN_ARGS = "every argument and its result are of built-in types or pgmodels' own row types"
THROUGH_CATALOG = "never reads a row of it: its relations are only oids looked up in pg_class and pg_attribute " \
                  "(has_*_privilege, regclass output, both built in)"
CREDENTIAL = "checks the caller's credential (pgmodels._verify_caller) and the caller's privilege itself"
OWNER = "checks the caller's credential and acts only for the owner of the project (or job, stream, monitor)"

DEFINERS: dict[str, tuple[str, str | None]] = {
    # sql/020_environment.sql
    "pgmodels._admin_setting(text)": (
        "reads pg_file_settings only; a text in, a text out",
        "a pgmodels.* setting of the server's configuration files: what pgmodels itself reads"),
    "pgmodels._activate()": (
        "no arguments; reads pg_extension and pgmodels.venv, then imports the pgmodels package from the "
        "administrator's environment (_activate_core, PL/Python, runs no query)",
        "activates only the environment the administrator configured"),
    "pgmodels._cron_status()": (
        "no arguments; reads two settings",
        "whether pg_cron is loaded is no secret (pgmodels.doctor() shows it)"),
    # sql/025_privileges.sql
    "pgmodels._verify_caller(text)": (
        "reads pgmodels._secret only; a text credential in, an oid out", None),
    "pgmodels._may(oid,bigint,text)": (
        f"{CATALOG} (projects, project_grants) and pg_roles; pg_has_role on oids",
        "answers about any role and project, as has_table_privilege does (the views ask it)"),
    "has_project_privilege(text,text,text)": (
        "looks the role and project up by name in pg_roles and projects, then asks _may",
        "user-facing: answers about any role, as has_table_privilege does"),
    "pgmodels._grant_project(text,text,text,boolean,text)": (
        f"{CATALOG} (projects, project_grants) and pg_roles; text arguments", OWNER),
    "pgmodels._require_owner(oid,pgmodels.projects)": (
        "takes a row of pgmodels.projects; asks _may and formats the project's name and owner (text, regrole)",
        None),
    # sql/030_catalog_writes.sql
    "pgmodels._store_model(text)": (
        "takes the model this backend staged (_take_staged, PL/Python, runs no query) as built-in values (text, "
        f"bytea, jsonb, text[]) and writes projects, models and deployments; {BUILTIN_ARGS}",
        "stores only the model this backend's own train() or import_onnx() staged under that one-time token, "
        "for a role that owns the project"),
    "pgmodels._project_info(text,text)": (f"{CATALOG} (projects)", OWNER),
    "pgmodels._deploy_strategy(text,text,text,text)": (f"{CATALOG} (projects, models, deployments)", OWNER),
    "pgmodels._deploy_model(bigint,text)": (f"{CATALOG} (projects, models, deployments)", OWNER),
    "pgmodels._deployed(bigint,text)": (f"{CATALOG} (projects, models)", OWNER),
    # sql/040_serving.sql, 045_vectorized.sql, 050_onnx.sql
    "pgmodels._resolve(text,bigint,oid,text,boolean)": (
        f"{CATALOG} (projects, models, deployments); returns pgmodels.served_model", None),
    "pgmodels._lookup(text,bigint,text)": (
        "checks the credential, activates (see _activate), reads the catalog through _resolve and hands the "
        "model to _load (PL/Python: the backend's model cache, no query)",
        "the gate of every predict: checks the credential and the predict privilege (the master switch)"),
    "pgmodels._catalog_changed()": (
        "a statement trigger on projects, models, deployments and project_grants: takes only the table's oid "
        "from its trigger data and queues an invalidation message for it (CacheInvalidateCatalog through "
        "ctypes); runs no query and reads no row", None),
    "pgmodels._serving_model(text,bigint,text)": (f"{CATALOG}, through _resolve", CREDENTIAL),
    "pgmodels._export(text,bigint,text)": (
        f"{CATALOG}, through _resolve; has_function_privilege and sha256 on the artifact",
        "checks the credential, the export privilege and the master switch itself"),
    # sql/070_batch_cron.sql, 071_batch_internal.sql
    "pgmodels._backend_alive(integer,timestamp with time zone)": (
        "reads pg_stat_activity only",
        "says only whether a pid is still the backend that started at that time (pgmodels.batch_runs asks)"),
    "pgmodels._cron_schedule(text,text,text,oid)": (
        "calls pg_cron's cron.schedule_in_database (a superuser's extension) with a command and a role its "
        "definer callers built from the catalog; reads pg_extension", None),
    "pgmodels._cron_unschedule(bigint)": ("reads cron.job and calls cron.unschedule, by job id", None),
    "pgmodels._cron_prune(bigint,interval)": ("deletes from cron.job_run_details by job id", None),
    "pgmodels._cron_entry(text,bigint)": (
        "reads batch_job and, where schema cron is pg_cron's (_cron_here), cron.job; matches the command with "
        "strpos and a format() of the job's name",
        "answers only for a job the caller owns (checks the credential): the pgmodels.batch_jobs view asks"),
    "pgmodels._batch_create(text,text,text,oid,name,oid,name,text[],integer,text,integer,interval,interval)": (
        f"the caller's source and output: {THROUGH_CATALOG}; writes batch_job, schedules through "
        "_batch_schedule",
        "checks the credential, EXECUTE on create_batch_job() and the caller's column privileges itself"),
    "pgmodels._batch_schedule(bigint,text)": (
        "reads batch_job; schedules, through _cron_schedule, a command made of the job's name (checked by "
        "_check_name, quoted with %L) for the job's owner", None),
    "pgmodels._batch_owned(text,text,boolean)": (f"{CATALOG} (batch_job); returns its row", OWNER),
    "pgmodels._batch_alter(text,text,text,boolean,integer,integer,interval,interval)": (
        f"{CATALOG} (batch_job); pg_cron through _batch_schedule and _cron_unschedule", OWNER),
    "pgmodels._batch_drop(text,text)": (
        f"{CATALOG} (batch_job); returns the output's oid as regclass, never reading it", OWNER),
    "pgmodels._batch_run_begin(text,text,text,text,bigint,integer,text,bigint,integer,text,text,text,text)": (
        f"{CATALOG} (batch_job, batch_run) and pg_stat_activity; the watermarks and cursor arrive as text, made "
        "by the run itself as the job's owner", "only the job's owner (its credential) begins a run"),
    "pgmodels._batch_release(text,text)": (f"{CATALOG} (batch_job)", OWNER),
    "pgmodels._batch_run_chunk(text,bigint,bigint,text,text)": (f"{CATALOG} (batch_run, batch_job)", OWNER),
    "pgmodels._batch_run_end(text,bigint,text,bigint,text,text,text,text)": (
        f"{CATALOG} (batch_run, batch_job); prunes pg_cron's history through _cron_prune", OWNER),
    # sql/076_stream_internal.sql, 077_stream.sql
    "pgmodels._may_consume(bigint,oid)": (
        "reads stream and pg_class; has_table_privilege and pg_has_role on oids",
        "the log's row-level policy asks it as the reader; it answers as has_table_privilege does"),
    "pgmodels._stream_get(text,text,boolean)": (f"{CATALOG} (stream); returns its row", OWNER),
    "pgmodels._stream_create(text,text,oid,name)": (
        f"the caller's table: {THROUGH_CATALOG}; checks the key column's type with _stream_capture_check; "
        "creates the log (its ev_row column is of the table's row type, stored, never converted) and the "
        "capture trigger (_stream_capture_define: CREATE TRIGGER runs nothing of the table's)",
        "checks the credential, EXECUTE on create_stream() and the table's ownership itself"),
    "pgmodels._stream_drop(text,text,boolean)": (
        f"{CATALOG}; DROP TRIGGER on the caller's table and DROP of the log run nothing of the table's", OWNER),
    "pgmodels._consumer_add(text,text,text,text,oid,oid,name,boolean,integer)": (
        f"the caller's output and enrichment relations: {THROUGH_CATALOG}; writes stream_consumer and its "
        "parts; GRANT SELECT on the log",
        "checks the credential, EXECUTE on add_consumer() and the caller's privileges itself"),
    "pgmodels._consumer_get(text,text,boolean,integer[])": (
        f"{CATALOG} (stream_consumer, its parts, stream); returns the source, output and enrichment as oids, "
        "never reading them", OWNER),
    "pgmodels._consumer_advance(text,bigint,integer,bigint,boolean,bigint,bigint)": (
        f"{CATALOG} (stream_consumer, its parts)", OWNER),
    "pgmodels._consumer_dead_letters(text,bigint,bigint[],text[],jsonb[],text[],text[])": (
        "writes stream_dead_letter from built-in arrays (the events' jsonb, made by process_stream as the "
        "consumer's owner)", OWNER),
    "pgmodels._consumer_drop(text,text)": (
        f"{CATALOG}; REVOKE on the log; returns the output's oid, never reading it", OWNER),
    "pgmodels._stream_waiting(text,text[],boolean)": (f"{CATALOG} (stream_waiter, stream_consumer)", OWNER),
    "pgmodels._stream_maintain(text,bigint)": (
        "reads only the log's built-in columns (ev_id, ev_txid), never ev_row (the caller's row type), and "
        f"TRUNCATEs its children; {CATALOG}",
        "for the stream's owner and its consumers' owners; removes only events every consumer is past"),
    "pgmodels._consumer_lag(bigint,text)": (
        "reads only the log's built-in columns (ev_id, ev_key, ev_txid, ev_time), never ev_row",
        "answers only the owners of the consumer or its stream"),
    "pgmodels._consumer_output(text)": (
        f"{CATALOG} (stream_consumer); returns the output's oid",
        "a consumer's output table and channel are no secret"),
    # sql/080_proxy.sql
    "pgmodels._may_manage_tokens(oid,oid)": (
        "reads pg_roles; pg_has_role on oids", "answers about roles as pg_has_role does"),
    "pgmodels._create_api_token(name,text)": (f"{CATALOG} (_api_tokens) and pg_roles", CREDENTIAL),
    "pgmodels._revoke_api_token(bigint,text,text)": (f"{CATALOG} (_api_tokens)", CREDENTIAL),
    "pgmodels._api_token_role(text)": (
        "reads _api_tokens and pg_roles; a text in, a name out",
        "answers only whoever holds the token, and never with a superuser"),
    "pgmodels._register_feature_source(text,regclass,text,text,text)": (
        f"the caller's relation: {THROUGH_CATALOG} (and _feature_source_check, which reads pg_class, "
        "pg_attribute and pg_type)", OWNER),
    "pgmodels._model_metadata(text,text)": (f"{CATALOG} (projects, models, deployments, feature_sources)",
                                            CREDENTIAL),
    # sql/100_monitor_views.sql, 101_monitor.sql
    "pgmodels._drift_reference(text,bigint,text)": (f"{CATALOG} (models, monitor_settings), through _resolve",
                                                    CREDENTIAL),
    "pgmodels._stage_profile(bigint,text)": (
        f"{CATALOG} (models, through _resolve and _require_monitor); hands the jsonb profile to _stage "
        "(PL/Python: keeps it in the backend's state, no query)",
        "checks the credential and the caller's privilege; the caller gets only a one-time token"),
    "pgmodels._set_monitor_thresholds(text,text,double precision,double precision,double precision,"
    "double precision,double precision,integer,text)": (f"{CATALOG} (projects, monitor_settings)", OWNER),
    "pgmodels._monitor_create(text,text,oid,text,text,boolean)": (
        f"the caller's relation: {THROUGH_CATALOG}; writes monitor; pg_cron through _cron_schedule with a "
        "command naming the monitor's id, for the verified caller",
        "checks the credential, EXECUTE on monitor() and the project's ownership itself"),
    "pgmodels._monitor_get(text,bigint)": (f"{CATALOG} (monitor, projects); returns the relation's oid", OWNER),
    "pgmodels._drift_report_write(text,bigint,bigint,timestamp with time zone,timestamp with time zone,bigint,"
    "text,text[],jsonb,jsonb)": (
        f"{CATALOG} (monitor, models, drift_report) from built-in values, the report's jsonb checked by "
        "_valid_drift_report (jsonb functions); pg_notify", OWNER),
    "pgmodels._drift_report_decide(text,bigint,jsonb)": (
        f"{CATALOG} (drift_report, monitor, models, deployments); a jsonb decision checked with jsonb functions",
        OWNER),
    "pgmodels._store_reference(text,bigint,jsonb)": (f"{CATALOG} (models, projects); a jsonb profile", OWNER),
    "pgmodels._drop_monitor(text,bigint)": (f"{CATALOG} (monitor); pg_cron through _cron_unschedule", OWNER),
    "pgmodels._monitor_retrain_with(text,bigint,jsonb)": (
        f"{CATALOG} (monitor); a jsonb of settings checked with jsonb functions", OWNER),
    "pgmodels._model_lineage(bigint,text)": (f"{CATALOG} (models, projects, deployments, drift_report)",
                                             CREDENTIAL),
    # sql/110_edge.sql
    "pgmodels._edge_key()": (
        "reads and writes edge_signing_key; a new key comes from _edge_new_key (PL/Python, os.urandom, no query)",
        None),
    "edge_public_key()": ("_edge_key's public half, as hex", "gives out the public half of the key only"),
    "pgmodels._export_bundle(text,bigint,text,jsonb,text)": (
        f"{CATALOG}, through _export and _resolve; the bundle is built in PL/Python (_edge_build, no query) from "
        "the catalog and check rows the invoker wrapper read, as jsonb, with the caller's rights", CREDENTIAL),
    "pgmodels._edge_options(text,bigint,jsonb,text)": (
        f"{CATALOG}, through _export and _resolve; PL/Python (_edge_options_report, no query) on jsonb check rows",
        CREDENTIAL),
    "pgmodels._edge_current(text,text)": (f"{CATALOG} (models, deployments, edge_signing_key's public half)",
                                          CREDENTIAL),
    "pgmodels._edge_current(text,text,text)": (
        f"{CATALOG} (models, deployments, rollout_runs, edge_signing_key's public half); the device id is only "
        "hashed (_rollout_share, SQL)", CREDENTIAL),
    "pgmodels._export_device_bundle(text,text,text)": (
        f"{CATALOG} (deployments, rollout_runs), then as _export_bundle: _export, _resolve and _edge_build "
        "(PL/Python, no query); the device id is only hashed (_rollout_share, SQL)", CREDENTIAL),
    # sql/120_families.sql
    "pgmodels._snapshot_create(oid,oid,text)": (
        f"the caller's relation: {THROUGH_CATALOG}; reads only the caller's own temporary copy (ONLY), refused "
        "unless it is a plain table with no policy, rule or trigger and every column of a built-in type (the "
        "caller converted each column as itself: _snapshot_type), into a table of exactly those types: no "
        "conversion runs",
        "checks the credential, EXECUTE on train() and the caller's privilege on the relation itself"),
    # sql/125_explain.sql
    "pgmodels._store_explainer(text)": (
        "takes the explainer record this backend staged (_take_staged_explainer, PL/Python, runs no query) as "
        f"built-in values (oid, bigint, text, boolean, bytea, jsonb) and writes model_explainers; {CATALOG}",
        "stores only the record this backend's own train() or set_reference() staged under that one-time token, "
        "for a role that owns the model's project"),
    "pgmodels._explain_lookup(text,bigint,text)": (
        f"as _lookup: the credential, activation, {CATALOG} (through _resolve, and model_explainers), then "
        "_explain_load (PL/Python: the backend's caches, no query) with the catalog's record; the features "
        "reach the explain cores as jsonb or arrays made by the invoker wrappers",
        "the gate of explain_prediction() and explain_batch(): checks the credential and the explain privilege"),
    # sql/040_serving.sql and sql/127-129 (rollouts)
    "pgmodels._lookup(text,bigint,text,boolean)": (
        "as _lookup(text,bigint,text), plus the project's active rollout from rollout_runs (catalog) and its "
        "candidate through _resolve, handed to _load as jsonb and pgmodels.served_model",
        "the gate with routing: checks the credential, EXECUTE on the three-argument form (the master switch) and "
        "the predict privilege"),
    "pgmodels._rollout_start(text,text,bigint,text,real,jsonb)": (
        f"{CATALOG} (and pg_cron through _cron_schedule with a command it builds); {BUILTIN_ARGS}", OWNER),
    "pgmodels._rollout_alter(text,bigint,text,real,jsonb)": (f"{CATALOG}; {BUILTIN_ARGS}", OWNER),
    "pgmodels._rollout_decide(text,bigint,text,boolean,text,jsonb)": (
        f"{CATALOG}, pg_notify with a jsonb it builds; {BUILTIN_ARGS}", OWNER),
    "pgmodels._rollout_for_owner(oid,bigint)": (f"{CATALOG}; {BUILTIN_ARGS}", None),
    "pgmodels._rollout_schedule(pgmodels.rollout_runs,oid)": (
        f"{CATALOG}; schedules with pg_cron a command of its own making (a bigint id), as the verified role", None),
    "pgmodels._rollout_version(text,text,text)": (
        f"{CATALOG} (through _resolve); the key arrives as text, converted by the caller's own statement",
        CREDENTIAL),
    "pgmodels._rollout_flush()": (
        "no arguments; inserts into rollout_predictions (catalog) the answers pgmodels' own scoring code put in "
        "the backend's PL/Python memory, all of built-in types",
        "writes only what this backend's scoring code recorded: nothing a caller hands it"),
    "pgmodels._outcomes_register(text,text,oid,text,text,text)": (
        f"{CATALOG}; the outcome relation {THROUGH_CATALOG}", OWNER),
    "pgmodels._rollout_evidence(text,bigint)": (
        f"{CATALOG}; the outcome relation {THROUGH_CATALOG} (format_type); the outcomes themselves are read by the "
        "invoker report code as the caller", OWNER),
    "pgmodels._rollout_purge(text,bigint)": (f"{CATALOG}; {BUILTIN_ARGS}", OWNER),
    "pgmodels._rollout_superseded()": (
        "a row trigger on deployments: reads and writes rollout_runs and rollout_history (catalog) by the new "
        "row's project id, unschedules with pg_cron by a stored entry id, pg_notify with a jsonb it builds", None),
    "pgmodels._rollouts_gone()": (
        "a statement trigger on rollout_runs: deletes from rollout_predictions (catalog) by the deleted rows' ids "
        "(bigint), nothing else", None),
    # made at run time by create_stream (sql/076_stream_internal.sql, _stream_capture_define)
    "pgmodels.stream_{id}_capture()": (
        "a trigger on the stream's table: first _stream_capture_check (the key column must be of a built-in "
        "base type, whose text form is built in, and the row type the table's own), then it converts only the "
        "key to text and the inserted rows to the table's own row type (no conversion) into the log", None),
}
