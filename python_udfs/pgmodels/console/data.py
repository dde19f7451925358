"""What each console page reads: one statement per page, run as the viewer's role
(Backend.run sets it for exactly that statement), through the same views and functions a
psql user of that role has: pgmodels.overview, history, drift_reports, batch_jobs,
batch_runs, stream_consumers, ... So a viewer sees only the projects, jobs and consumers
that role may see, and the console can change nothing: it runs only these SELECTs."""

from __future__ import annotations

import json

INDEX = """
SELECT (SELECT coalesce(jsonb_agg(o ORDER BY o.project, o.version), '[]')
          FROM (SELECT project, version, model_id, task, algorithm, key_metric, deployed, trained_at
                  FROM pgmodels.overview) o),
       (SELECT coalesce(jsonb_agg(j ORDER BY j.job), '[]')
          FROM (SELECT job, project, schedule, output FROM pgmodels.batch_jobs) j),
       (SELECT coalesce(jsonb_agg(c ORDER BY c.consumer), '[]')
          FROM (SELECT consumer, stream, project, events_processed, events_pending FROM pgmodels.stream_consumers) c),
       (SELECT coalesce(jsonb_agg(r ORDER BY r.project), '[]')
          FROM (SELECT DISTINCT ON (project) project, id, status, drifted, created_at
                  FROM pgmodels.drift_reports ORDER BY project, id DESC) r),
       (SELECT coalesce(jsonb_agg(r ORDER BY r.id), '[]')
          FROM (SELECT id, project, champion_version, candidate_version, mode, fraction, status, last_decision
                  FROM pgmodels.rollouts WHERE status = 'active') r)
"""

PROJECT = """
SELECT (SELECT coalesce(jsonb_agg(o ORDER BY o.version), '[]')
          FROM (SELECT version, model_id, task, algorithm, runtime, key_metric, metrics, deployed, trained_at,
                       trained_by, artifact_bytes, retrain FROM pgmodels.overview WHERE project = %(p)s) o),
       (SELECT coalesce(jsonb_agg(h ORDER BY h.at), '[]')
          FROM (SELECT at, event, model_id, version, detail FROM pgmodels.history WHERE project = %(p)s) h),
       (SELECT to_jsonb(r) FROM (SELECT id, model_id, model_version, relation, window_start, window_end, rows, status,
                                        drifted, features, retrain, created_at, thresholds
                                   FROM pgmodels.drift_reports WHERE project = %(p)s ORDER BY id DESC LIMIT 1) r),
       (SELECT coalesce(jsonb_agg(f ORDER BY f.report_id), '[]')
          FROM (SELECT report_id, feature, psi, status FROM pgmodels.drift_report_features
                 WHERE project = %(p)s AND report_id > (SELECT coalesce(max(id), 0) - 50 FROM pgmodels.drift_reports
                                                         WHERE project = %(p)s)) f),
       (SELECT coalesce(jsonb_agg(r ORDER BY r.id DESC), '[]')
          FROM (SELECT id, champion_version, candidate_version, mode, fraction, status, started_at, ended_at,
                       last_decision, last_reason FROM pgmodels.rollouts WHERE project = %(p)s) r)
"""

# model_lineage() as its body (the console's statements see pg_catalog and qualified names
# only: proxy/core.py)
VERSION = "SELECT pgmodels._model_lineage(%(id)s, pgmodels._credential()), " \
          "(SELECT coalesce(jsonb_agg(l), '[]') FROM (SELECT * FROM pgmodels._model_lineage_rows(%(id)s) " \
          "UNION ALL SELECT NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)) l), " \
          "(SELECT to_jsonb(e) FROM (SELECT kind, exact, method, output, importance, importance_rows, source " \
          "FROM pgmodels.explainers WHERE model_id = %(id)s) e)"

# A row of the project's feature source, by key, explained: read as the viewer's role by
# the same invoker function pgmodels serve reads keys with, then explain_prediction()'s
# body (its cores and gate; the gate checks the explain privilege), all in one statement.
EXPLAIN = """
SELECT s.relation_schema, s.relation_name, s.key_column, k.found,
       (SELECT to_jsonb(x) FROM (SELECT (q.e).feature, (q.e).value, (q.e).contribution FROM (SELECT coalesce(
            pgmodels._explain(%(p)s, 0, k.doc, %(n)s, NULL, pgmodels._stamp(), NULL),
            pgmodels._explain(%(p)s, 0, k.doc, %(n)s, NULL, pgmodels._stamp(),
                              pgmodels._explain_lookup(%(p)s, 0, pgmodels._credential())),
            pgmodels._raise_pending(NULL::pgmodels.explanation)) AS e WHERE k.found OFFSET 0) q) x)
  FROM pgmodels.project_feature_sources s
  LEFT JOIN LATERAL pgmodels._feature_rows(s.relation_schema, s.relation_name, s.key_column, ARRAY[%(key)s]) k
    ON true
 WHERE s.project = %(p)s
"""

REFERENCE = "SELECT pgmodels._model_lineage(%(id)s, pgmodels._credential()) -> 'training' -> 'profile'"

BATCH = """
SELECT (SELECT coalesce(jsonb_agg(j ORDER BY j.job), '[]')
          FROM (SELECT job, project, source, output, schedule, incremental_column, chunk_rows, owner
                  FROM pgmodels.batch_jobs) j),
       (SELECT coalesce(jsonb_agg(r ORDER BY r.job, r.run_id), '[]')
          FROM (SELECT * FROM (SELECT run_id, job, status, mode, triggered_by, started_at, finished_at,
                                      extract(epoch FROM duration)::float8 AS seconds, rows_scored, model_version,
                                      error, row_number() OVER (PARTITION BY job ORDER BY run_id DESC) AS n
                                 FROM pgmodels.batch_runs) x WHERE x.n <= 30) r)
"""

STREAMS = """
SELECT (SELECT coalesce(jsonb_agg(c ORDER BY c.consumer), '[]')
          FROM (SELECT consumer, stream, project, output, channel, events_processed, events_pending,
                       extract(epoch FROM oldest_pending_age)::float8 AS oldest_pending_s, failures, last_activity
                  FROM pgmodels.stream_consumers) c),
       (SELECT coalesce(jsonb_agg(h ORDER BY h.consumer, h.at), '[]')
          FROM (SELECT consumer, extract(epoch FROM at)::float8 AS at, events_processed, events_pending
                  FROM pgmodels.stream_consumer_history WHERE at > now() - interval '1 hour') h),
       (SELECT coalesce(jsonb_agg(d ORDER BY d.failed_at DESC), '[]')
          FROM (SELECT consumer, event_id, event_key, error, error_sqlstate, failed_at
                  FROM pgmodels.stream_dead_letters ORDER BY failed_at DESC LIMIT 50) d)
"""


# pgmodels.rollouts and pgmodels.rollout_decisions: every rollout of the projects the
# viewer's role may use, and one rollout with each of its starts, changes and evaluations
ROLLOUTS = """
SELECT (SELECT coalesce(jsonb_agg(r ORDER BY r.id DESC), '[]')
          FROM (SELECT id, project, champion_id, champion_version, candidate_id, candidate_version, mode, fraction,
                       status, rule, started_by, started_at, ended_at, last_decision, last_reason, decided_at,
                       last_report FROM pgmodels.rollouts) r)
"""

ROLLOUT = """
SELECT (SELECT to_jsonb(r) FROM (SELECT id, project, champion_id, champion_version, candidate_id, candidate_version,
                                        mode, fraction, status, rule, started_by, started_at, ended_at, last_decision,
                                        last_reason, decided_at, last_report
                                   FROM pgmodels.rollouts WHERE id = %(id)s) r),
       (SELECT coalesce(jsonb_agg(d ORDER BY d.at), '[]')
          FROM (SELECT at, action, automatic, reason, numbers, by_role FROM pgmodels.rollout_decisions
                 WHERE rollout_id = %(id)s) d)
"""


def _j(value):
    return json.loads(value) if isinstance(value, str) else value


async def fetch(backend, role: str, statement: str, **params) -> list:
    rows = await backend.run(role, statement, params)
    return [_j(v) for v in rows[0]]
