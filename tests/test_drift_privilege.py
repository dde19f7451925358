"""Issue #24, section 3: drift statistics are an oracle of the training data, so comparing
data with a project's training profile is for its owner and the roles granted `monitor`
(grant_project(p, role, 'monitor')), not for every role that may predict.

The project is trained by a LOGIN role of its own (granted train and monitor by an
administrator) on x = 1..400 and a three-valued text column, as in the issue's report;
the attacker is a LOGIN role with only the predict privilege, probing with a temporary
table of its own whose every row holds one value."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from dbhelpers import role_connection, sql_error

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
MONITOR = "monitor(text, text, text, text, boolean)"


@pytest.fixture(scope="module")
def vproj(test_db, cluster):
    """A project owned by a LOGIN role, with a monitor's report on the owner's rows."""
    tag = uuid.uuid4().hex[:8]
    owner, project = f"dp_owner_{tag}", f"dp_vproj_{tag}"
    admin = psycopg.connect(test_db, autocommit=True)
    admin.execute(f"CREATE ROLE {owner} LOGIN PASSWORD 'pw'")
    admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    admin.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN}, {MONITOR} TO {owner}")
    own = role_connection(cluster, admin.info.dbname, owner)
    own.execute(f"CREATE TABLE {project}_train AS SELECT i::float8 AS x, "
                "(ARRAY['red', 'green', 'blue'])[1 + i % 3] AS color, (i > 200)::int AS y "
                "FROM generate_series(1, 400) i")
    model_id = own.execute("SELECT model_id FROM train(%s, 'classification', %s, 'y', 'xgboost', "
                           "'{\"n_estimators\": 10}')", [project, f"{project}_train"]).fetchone()[0]
    # the owner's monitored rows: shifted, so the report has something to say
    own.execute(f"CREATE TABLE {project}_now AS SELECT (i + 150)::float8 AS x, 'red' AS color, 1 AS y "
                "FROM generate_series(1, 400) i")
    monitor_id = own.execute("SELECT monitor(%s, %s, NULL)", [project, f"{project}_now"]).fetchone()[0]
    report_id = own.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    assert report_id is not None
    yield {"owner": owner, "own": own, "project": project, "model_id": model_id, "monitor_id": monitor_id,
           "report_id": report_id, "admin": admin, "dsn": test_db}
    own.close()
    admin.execute("DELETE FROM pgmodels.projects WHERE name = %s", [project])
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [owner])
    admin.execute(f"DROP OWNED BY {owner}")
    admin.execute(f"DROP ROLE {owner}")
    admin.close()


@pytest.fixture
def attacker(vproj, make_role, name):
    """A LOGIN role with only predict on the project, and its probe table."""
    rolname, role = make_role(name + "_p")
    vproj["own"].execute("SELECT grant_project(%s, %s, 'predict')", [vproj["project"], rolname])
    role.execute("CREATE TEMP TABLE probe (x float8, color text)")
    return rolname, role


def probe(role, project: str, x: float, color: str = "red"):
    role.execute("TRUNCATE probe")
    role.execute("INSERT INTO probe SELECT %s, %s FROM generate_series(1, 200)", [x, color])
    return {r[0]: r for r in role.execute("SELECT feature, kind, rows, psi, ks_statistic FROM drift(%s, 'probe')",
                                           [project])}


def test_drift_as_a_predict_only_role_is_refused_and_reveals_nothing(vproj, attacker):
    rolname, role = attacker
    project = vproj["project"]
    errors = []
    # the binary search over x, and the set-membership test over color: every probe
    # is refused the same way, whatever the value
    for x, color in ((2, "red"), (200, "red"), (300, "red"), (399, "red"), (200, "purple"), (200, "green")):
        role.execute("TRUNCATE probe")
        role.execute("INSERT INTO probe SELECT %s, %s FROM generate_series(1, 200)", [x, color])
        err = sql_error(role, "SELECT * FROM drift(%s, 'probe')", [project])
        errors.append((err.sqlstate, err.diag.message_primary, err.diag.message_detail, err.diag.message_hint))
    assert len(set(errors)) == 1
    sqlstate, message, detail, hint = errors[0]
    assert sqlstate == "42501"
    assert message == f'permission denied to compare with the training profile of project "{project}"'
    assert "distribution" in detail and "monitor" in detail and rolname in detail
    assert f"grant_project('{project}', '{rolname}', 'monitor')" in hint
    # the same for a version named by id, and for a time window
    err = sql_error(role, "SELECT * FROM drift(%s, 'probe', %s)", [project, vproj["model_id"]])
    assert err.sqlstate == "42501" and err.diag.message_primary == message
    # the internal routes: the core returns no row, the profile is not staged, the stager
    # and the check are not the caller's to run
    assert role.execute("SELECT * FROM pgmodels._drift(%s, 'probe', NULL, NULL, NULL)", [project]).fetchall() == []
    err = sql_error(role, "SELECT pgmodels._stage_profile(%s, pgmodels._credential())", [vproj["model_id"]])
    assert err.sqlstate == "42501" and err.diag.message_primary == message  # PostgreSQL's words, no Python's
    for statement in ("SELECT pgmodels._stage('{}'::jsonb)", "SELECT pgmodels._require_monitor(10, 1)"):
        assert sql_error(role, statement).sqlstate == "42501", statement
    # a monitor of its own on the project is the owner's only
    err = sql_error(role, "SELECT monitor(%s, 'probe', NULL)", [project])
    assert err.sqlstate == "42501"
    # set_reference (which would replace the profile) is the owner's
    err = sql_error(role, "SELECT set_reference(%s, 'probe')", [project])
    assert err.sqlstate == "42501"


def test_reports_history_monitors_and_lineage_keep_the_statistics_from_a_predict_only_role(vproj, attacker):
    rolname, role = attacker
    project, report_id = vproj["project"], vproj["report_id"]

    def seen():
        return {
            "reports": role.execute("SELECT count(*) FROM pgmodels.drift_reports WHERE project = %s",
                                    [project]).fetchone()[0],
            "features": role.execute("SELECT count(*) FROM pgmodels.drift_report_features WHERE project = %s",
                                     [project]).fetchone()[0],
            "history": role.execute("SELECT count(*) FROM pgmodels.history WHERE project = %s "
                                    "AND event LIKE 'drift report%%'", [project]).fetchone()[0],
            "monitor": role.execute("SELECT last_status FROM pgmodels.monitors WHERE id = %s",
                                    [vproj["monitor_id"]]).fetchone(),
            "trained": role.execute("SELECT count(*) FROM pgmodels.history WHERE project = %s AND event = 'trained'",
                                    [project]).fetchone()[0],
            "profile": role.execute("SELECT pgmodels._model_lineage(%s, pgmodels._credential()) "
                                    "-> 'training' -> 'profile' -> 'features' -> 'x'",
                                    [vproj["model_id"]]).fetchone()[0],
        }
    before = seen()
    # the project and its monitor are visible (it may use the project), the statistics not
    assert before == {"reports": 0, "features": 0, "history": 0, "monitor": (None,), "trained": 1,
                      "profile": {"kind": "numeric"}}
    status = vproj["own"].execute("SELECT status FROM pgmodels.drift_reports WHERE id = %s",
                                  [report_id]).fetchone()[0]
    assert status == "drift"  # (the owner sees it)
    vproj["own"].execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
    after = seen()
    assert after["reports"] == 1 and after["features"] >= 2 and after["history"] == 1
    assert after["monitor"] == (status,) and len(after["profile"]["quantiles"]) == 101


def test_the_monitor_privilege_gives_drift_and_revoking_it_takes_it_back_at_the_next_statement(vproj, attacker):
    rolname, role = attacker
    project, own = vproj["project"], vproj["own"]
    assert not role.execute("SELECT has_project_privilege(current_user, %s, 'monitor')", [project]).fetchone()[0]
    own.execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
    assert role.execute("SELECT has_project_privilege(current_user, %s, 'monitor')", [project]).fetchone()[0]
    # now the statistics are answered: the KS statistic of a one-valued table is the
    # training CDF there (what the privilege reveals, and why it is granted by name)
    at_200 = probe(role, project, 200)
    assert abs(at_200["x"][4] - 0.5013) < 0.01 and at_200["x"][2] == 200
    known, unknown = probe(role, project, 200, "red")["color"][3], probe(role, project, 200, "purple")["color"][3]
    assert unknown > known + 1
    # revoked: the same session's next statement is refused
    own.execute("SELECT revoke_project(%s, %s, 'monitor')", [project, rolname])
    err = sql_error(role, "SELECT * FROM drift(%s, 'probe')", [project])
    assert err.sqlstate == "42501" and "training profile" in err.diag.message_primary
    assert not role.execute("SELECT has_project_privilege(current_user, %s, 'monitor')", [project]).fetchone()[0]
    # predict is untouched by either
    assert role.execute("SELECT has_project_privilege(current_user, %s, 'predict')", [project]).fetchone()[0]
    # inside one transaction too: granted, used, revoked by the owner, refused
    own.execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
    with role.transaction():
        assert probe(role, project, 300)["x"][2] == 200
        own.execute("SELECT revoke_project(%s, %s, 'monitor')", [project, rolname])
        with pytest.raises(psycopg.Error) as info:
            role.execute("SELECT * FROM drift(%s, 'probe')", [project])
        assert info.value.sqlstate == "42501"


def test_all_does_not_grant_monitor_but_revoking_all_takes_it(vproj, attacker):
    rolname, role = attacker
    project, own = vproj["project"], vproj["own"]

    def privileges():
        return {p: role.execute("SELECT has_project_privilege(current_user, %s, %s)", [project, p]).fetchone()[0]
                for p in ("predict", "export", "monitor", "use", "owner")}
    own.execute("SELECT grant_project(%s, %s, 'all')", [project, rolname])
    assert privileges() == {"predict": True, "export": True, "monitor": False, "use": True, "owner": False}
    assert sql_error(role, "SELECT * FROM drift(%s, 'probe')", [project]).sqlstate == "42501"
    own.execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
    assert privileges()["monitor"]
    assert role.execute("SELECT privilege FROM pgmodels.project_privileges WHERE project = %s AND grantee = %s "
                        "ORDER BY 1", [project, rolname]).fetchall() == [("export",), ("monitor",), ("predict",)]
    own.execute("SELECT revoke_project(%s, %s)", [project, rolname])  # default: all
    assert privileges() == {"predict": False, "export": False, "monitor": False, "use": False, "owner": False}
    # the owner has every privilege, monitor included
    assert own.execute("SELECT has_project_privilege(current_user, %s, 'monitor')", [project]).fetchone()[0]


def test_monitor_without_predict_sees_reports_but_cannot_score_with_drift(vproj, make_role, name):
    rolname, role = make_role(name + "_m")
    project = vproj["project"]
    vproj["own"].execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
    role.execute("CREATE TEMP TABLE probe (x float8, color text)")
    role.execute("INSERT INTO probe VALUES (200, 'red')")
    # drift() also reports the model's answers on the rows: that is predict's
    err = sql_error(role, "SELECT * FROM drift(%s, 'probe')", [project])
    assert err.sqlstate == "42501" and "permission denied for project" in err.diag.message_primary
    assert role.execute("SELECT count(*) FROM pgmodels.drift_reports WHERE project = %s", [project]).fetchone() == (1,)


def test_bad_privilege_names_are_still_22023(vproj, attacker):
    rolname, role = attacker
    project, own = vproj["project"], vproj["own"]
    for bad in ("MONITOR", "monitoring", "Monitor ", "", "usage"):
        for statement in ("SELECT grant_project(%s, %s, %s)", "SELECT revoke_project(%s, %s, %s)"):
            err = sql_error(own, statement, [project, rolname, bad])
            assert err.sqlstate == "22023" and "monitor" in err.diag.message_hint, (statement, bad)
        err = sql_error(role, "SELECT has_project_privilege(current_user, %s, %s)", [project, bad])
        assert err.sqlstate == "22023" and "monitor" in err.diag.message_hint, bad
    assert sql_error(own, "SELECT grant_project(%s, %s, NULL)", [project, rolname]).sqlstate == "22023"
    # the catalog holds no other privilege, whoever writes it
    err = sql_error(vproj["admin"], "INSERT INTO pgmodels.project_grants (project_id, grantee, privilege) "
                    "SELECT id, %s::regrole, 'monitoring' FROM pgmodels.projects WHERE name = %s", [rolname, project])
    assert err.sqlstate == "23514"
    # a role without the project's ownership grants nothing
    err = sql_error(role, "SELECT grant_project(%s, current_user, 'monitor')", [project])
    assert err.sqlstate == "42501"
    assert not role.execute("SELECT has_project_privilege(current_user, %s, 'monitor')", [project]).fetchone()[0]


def test_the_owners_monitor_keeps_running_as_its_owner(vproj):
    own, project = vproj["own"], vproj["project"]
    report_id = own.execute("SELECT run_monitor(%s)", [vproj["monitor_id"]]).fetchone()[0]
    row = own.execute("SELECT created_by, status FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()
    assert row == (vproj["owner"], "drift")
    assert len(own.execute("SELECT * FROM drift(%s, %s)", [project, f"{project}_now"]).fetchall()) == 3


def test_the_console_shows_a_predict_only_role_no_drift_statistic(vproj, attacker, tmp_path):
    from proxyhelpers import Server

    rolname, role = attacker
    project, admin = vproj["project"], vproj["admin"]
    token = admin.execute("SELECT create_api_token(%s)", [rolname]).fetchone()[0]
    server = Server(vproj["dsn"], tmp_path, workers=1)
    try:
        def page(path):
            r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            return r.text
        text = page(f"/console/projects/{project}")
        assert 'table class="drift"' not in text and "PSI" not in text and "may see" in text
        index = page("/console/")
        assert project in index and "drift:" not in index
        vproj["own"].execute("SELECT grant_project(%s, %s, 'monitor')", [project, rolname])
        text = page(f"/console/projects/{project}")
        assert 'table class="drift"' in text and "PSI" in text
    finally:
        server.stop()
