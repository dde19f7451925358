"""The console's pages, served by ``pgmodels serve`` under /console.

Read-only: every page runs SELECTs (console/data.py) as the role the viewer's token maps
to, exactly as the inference endpoints do, so a viewer sees what that role may see in
psql and nothing more. The token comes from a login form (kept in an HttpOnly,
SameSite=Strict cookie scoped to /console) or an ``Authorization: Bearer`` header; with
``--anonymous-role`` a page opens without one. Pages are rendered on the server (Jinja2
templates, SVG charts: console/charts.py); no script runs in the page, and the Content
Security Policy says so.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..proxy.errors import ProxyError
from . import charts, data

HERE = Path(__file__).resolve().parent
COOKIE = "pgmodels_console"
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
env.filters["fmt"] = charts._fmt
env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
env.filters["q"] = lambda v: quote(str(v), safe="")
env.filters["label"] = lambda v: ("true" if v else "false") if isinstance(v, bool) else str(v)
env.filters["when"] = lambda v: str(v or "")[:19].replace("T", " ")


def _page(template: str, status: int = 200, **context) -> HTMLResponse:
    html = env.get_template(template).render(status=status, **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _wants_json(request: Request) -> bool:
    """?format=json: a page's data as JSON, the same the HTML is rendered from."""
    return request.query_params.get("format") == "json"


def _json(body) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(body, default=str)), headers=HEADERS)


def routes(backend) -> list[Route]:
    async def viewer(request: Request) -> str:
        header = request.headers.get("authorization")
        token = request.cookies.get(COOKIE)
        return await backend.role_for(header or (f"Bearer {token}" if token else None))

    def page(render):
        async def endpoint(request: Request) -> Response:
            try:  # a NUL in the path never gets here (proxy/nul.py answers 400)
                role = await viewer(request)
                return await render(request, role)
            except ProxyError as e:
                if e.status == 401:
                    return RedirectResponse("/console/login", status_code=303, headers=HEADERS)
                return _page("error.html", status=e.status, message=e.message, role=None)
        return endpoint

    async def index(request: Request, role: str) -> Response:
        versions, jobs, consumers, reports, rollouts = await data.fetch(backend, role, data.INDEX)
        projects = {}
        for v in versions:
            p = projects.setdefault(v["project"], {"name": v["project"], "task": v["task"], "versions": []})
            p["versions"].append(v)
            if v["deployed"]:
                p["deployed"] = v
        drift = {r["project"]: r for r in reports}
        for p in projects.values():
            points = [(f"v{v['version']}", v["key_metric"]) for v in p["versions"]]
            deployed = next((i for i, v in enumerate(p["versions"]) if v["deployed"]), None)
            p["chart"] = charts.line(points, highlight=deployed, title=f"{p['name']}: key metric by version")
            p["drift"] = drift.get(p["name"])
            p["rollouts"] = [r for r in rollouts if r["project"] == p["name"]]
        return _page("index.html", role=role, projects=list(projects.values()), jobs=jobs, consumers=consumers)

    async def project(request: Request, role: str) -> Response:
        name = request.path_params["name"]
        versions, history, report, features, rollouts = await data.fetch(backend, role, data.PROJECT, p=name)
        if not versions:
            raise ProxyError(404, f'no project "{name}" that role "{role}" may use')
        index = {v["version"]: i for i, v in enumerate(versions)}
        markers = {index[h["version"]]: h["event"] for h in history
                   if h["event"] in ("deployed", "rolled back") and h["version"] in index}
        deployed = next((i for i, v in enumerate(versions) if v["deployed"]), None)
        metric = "f1" if versions[0]["task"] == "classification" else "r2"
        chart = charts.line([(f"v{v['version']}", v["key_metric"]) for v in versions], markers, highlight=deployed,
                            title=f"{metric} by version, deploys and rollbacks marked")
        psi = {}
        for f in features:
            psi.setdefault(f["feature"], []).append((f["report_id"], f["psi"], f["status"]))
        limits = (report or {}).get("thresholds") or {}
        psi_charts = [(feature, charts.psi(points, f"PSI of {feature} by report", limits))
                      for feature, points in psi.items()]
        compares, why_not = [], None
        if report:
            profile = (await data.fetch(backend, role, data.REFERENCE, id=report["model_id"]))[0] or {}
            compares = _compares(profile, report)
            why_not = None if compares else _why_no_compares(profile)
        return _page("project.html", role=role, name=name, versions=versions, history=history[::-1][:30],
                     chart=chart, metric=metric, report=report, psi_charts=psi_charts, compares=compares,
                     why_not=why_not, rollouts=rollouts)

    async def version(request: Request, role: str) -> Response:
        name, wanted = request.path_params["name"], request.path_params["version"]
        versions = (await data.fetch(backend, role, data.PROJECT, p=name))[0]
        match = next((v for v in versions if str(v["version"]) == wanted), None)
        if match is None:
            raise ProxyError(404, f'project "{name}" has no version {wanted} that role "{role}" may see')
        record, lineage, explainer = await data.fetch(backend, role, data.VERSION, id=match["model_id"])
        training = record.get("training") or {}
        importances = training.get("feature_importances") or {}
        evaluation = training.get("evaluation") or {}
        residuals = None
        if "residuals" in evaluation:
            h = evaluation["residuals"]["histogram"]
            total = sum(h["counts"]) or 1
            residuals = charts.compare([charts._fmt(e) for e in h["edges"][:-1]], [c / total for c in h["counts"]],
                                       None, title="residuals on the test split")
        return _page("version.html", role=role, name=name, v=match, record=record, lineage=lineage,
                     importances=charts.bars(list(importances.items()), "feature importances") if importances else None,
                     confusion=evaluation.get("confusion_matrix"), labels=record.get("labels") or [],
                     residuals=residuals, explainer=explainer,
                     importance=charts.importance(list((explainer or {}).get("importance", {}).items()),
                                                  "global importance: mean |contribution|") if explainer else None)

    async def explain(request: Request, role: str) -> Response:
        """Why the deployed model predicts what it does for one row of the project's feature
        source (?key=...): a waterfall from the base to the model's raw output."""
        name = request.path_params["name"]
        key = request.query_params.get("key")
        top = request.query_params.get("top")
        top_n = int(top) if top and top.isdigit() and int(top) > 0 else 12
        if key is None or not key.strip():
            raise ProxyError(400, "ask for a key of the project's feature source: ?key=...")
        rows = await backend.run(role, data.EXPLAIN, {"p": name, "key": key, "n": top_n})
        if not rows:
            raise ProxyError(404, f'project "{name}" has no feature source that role "{role}" may use: '
                                  "its owner registers one with register_feature_source()")
        schema, relation, key_column, found, got = rows[0]
        if not found:
            raise ProxyError(404, f'no row of {schema}.{relation} has {key_column} = {key}')
        got = data._j(got)
        entries = list(zip(got["feature"], got["value"], got["contribution"]))
        base, steps = entries[0], entries[1:]
        total = sum(c for _, _, c in entries)
        chart = charts.waterfall(base[2], steps, f"{name}, {key_column} = {key}: from the base to the prediction")
        return _page("explain.html", role=role, name=name, key=key, key_column=key_column,
                     source=f"{schema}.{relation}", chart=chart, base=base, steps=steps, total=total,
                     probability=_probability(base[1], total))

    async def batch(request: Request, role: str) -> Response:
        jobs, runs = await data.fetch(backend, role, data.BATCH)
        for j in jobs:
            mine = [r for r in runs if r["job"] == j["job"]]
            for r in mine:
                r["rows"] = r["rows_scored"]
                r["rows_per_s"] = r["rows_scored"] / r["seconds"] if r["seconds"] else None
            j["runs"] = mine[::-1]
            j["chart"] = charts.timeline(mine, title=f"runs of {j['job']}")
        return _page("batch.html", role=role, jobs=jobs)

    async def streams(request: Request, role: str) -> Response:
        consumers, samples, dead = await data.fetch(backend, role, data.STREAMS)
        now = datetime.datetime.now(datetime.timezone.utc).timestamp()
        for c in consumers:
            mine = [s for s in samples if s["consumer"] == c["consumer"]]
            rate = [((b["at"] - now) / 60, (b["events_processed"] - a["events_processed"]) / (b["at"] - a["at"]))
                    for a, b in zip(mine, mine[1:]) if b["at"] > a["at"]]
            lag = [((s["at"] - now) / 60, s["events_pending"] or 0) for s in mine]
            c["throughput"] = charts.timeseries(rate, f"{c['consumer']}: events/s", "minutes ago")
            c["lag"] = charts.timeseries(lag, f"{c['consumer']}: events pending", "minutes ago")
        return _page("streams.html", role=role, consumers=consumers, dead=dead)

    async def rollouts(request: Request, role: str) -> Response:
        rows = (await data.fetch(backend, role, data.ROLLOUTS))[0]
        for r in rows:
            r["versions"] = (r.get("last_report") or {}).get("versions") or []
        if _wants_json(request):
            return _json({"rollouts": rows})
        return _page("rollouts.html", role=role, rollouts=rows)

    async def rollout(request: Request, role: str) -> Response:
        wanted = request.path_params["id"]
        if not wanted.isdigit() or len(wanted) > 18:
            raise ProxyError(404, f"no rollout {wanted}")
        ro, decisions = await data.fetch(backend, role, data.ROLLOUT, id=int(wanted))
        if ro is None:
            raise ProxyError(404, f'no rollout {wanted} of a project that role "{role}" may use')
        view = rollout_view(ro, decisions)
        if _wants_json(request):
            return _json({"rollout": ro, "decisions": decisions, **{k: view[k] for k in ("side", "series", "shares")}})
        return _page("rollout.html", role=role, ro=ro, decisions=decisions[::-1], **view)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _page("login.html", role=None, error=None)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            # a form on another site cannot log this browser in under its own token
            return _page("login.html", status=403, role=None, error="a login from another origin is refused")
        body = (await request.body())[:4096].decode("utf-8", "replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        try:
            role = await backend.role_for(f"Bearer {token}")
        except ProxyError as e:  # 400 for a token with a NUL (core.Backend.run), else 401
            return _page("login.html", status=400 if e.status == 400 else 401, role=None, error=e.message)
        response = RedirectResponse("/console/", status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/console",
                            secure=request.url.scheme == "https")
        del role
        return response

    async def logout(request: Request) -> Response:
        if request.method != "POST":
            return _page("logout.html", role=None)
        response = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/console")
        return response

    async def css(request: Request) -> Response:
        return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css",
                        headers={**HEADERS, "Cache-Control": "max-age=3600"})

    return [Route("/console", lambda r: RedirectResponse("/console/", status_code=308), methods=["GET"]),
            Route("/console/", page(index), methods=["GET"]),
            Route("/console/projects/{name}", page(project), methods=["GET"]),
            Route("/console/projects/{name}/versions/{version}", page(version), methods=["GET"]),
            Route("/console/projects/{name}/explain", page(explain), methods=["GET"]),
            Route("/console/batch", page(batch), methods=["GET"]),
            Route("/console/rollouts", page(rollouts), methods=["GET"]),
            Route("/console/rollouts/{id}", page(rollout), methods=["GET"]),
            Route("/console/streams", page(streams), methods=["GET"]),
            Route("/console/login", login, methods=["GET", "POST"]),
            Route("/console/logout", logout, methods=["GET", "POST"]),
            Route("/console/static/console.css", css, methods=["GET"])]


def rollout_shares(mode: str, fraction: float | None) -> list[tuple[str, str, float]]:
    """Who answers which share of keys: in shadow the champion answers every key (the
    candidate scores them all beside it); in a canary the candidate answers keys whose
    share is below the fraction f, the control group [f, 2f) is the champion's answers
    compared with it, and the champion answers the rest."""
    if mode != "canary" or fraction is None:
        return [("champion", "champion answers (candidate in shadow)", 1.0)]
    f = float(fraction)
    return [("candidate", "candidate", f), ("control", "control", min(f, 1.0 - f)),
            ("champion", "champion", max(1.0 - 2 * f, 0.0))]


def rollout_view(ro: dict, decisions: list[dict]) -> dict:
    """What the rollout page shows, from pgmodels.rollouts and pgmodels.rollout_decisions:
    both versions side by side (the last evaluation), the metric of each evaluation with its
    interval, and the shares."""
    versions = (ro.get("last_report") or {}).get("versions") or []
    side = [{"role": "champion" if v["role"] == "champion" else "candidate", **v} for v in versions]
    evaluations = [d for d in decisions if isinstance(d.get("numbers"), dict) and d["numbers"].get("versions")]
    series: dict[str, list] = {"champion": [], "candidate": []}
    for d in evaluations:
        label = str(d["at"])[11:19]
        for v in d["numbers"]["versions"]:
            key = "champion" if v["role"] == "champion" else "candidate"
            series[key].append((label, v.get("value"), v.get("ci_low"), v.get("ci_high")))
    metric = (ro.get("rule") or {}).get("metric", "metric")
    chart = charts.intervals(series, f"{metric} of each version at each evaluation, with its interval")
    share = rollout_shares(ro["mode"], ro.get("fraction"))
    return {"side": side, "series": series, "shares": share, "chart": chart, "metric": metric,
            "evaluations": len(evaluations),
            "share_chart": charts.shares(share, f"who answers which keys: {ro['mode']}"
                                                + (f" at {ro['fraction']}" if ro.get("fraction") else ""))}


def _probability(what: str, total: float) -> float | None:
    """A binary classifier's probability from its log-odds (the base row says which)."""
    import math

    if not what.startswith("the log-odds of"):
        return None
    return 1.0 / (1.0 + math.exp(-total)) if total > -700 else 0.0


def _why_no_compares(profile: dict) -> str:
    """Why a report has no training-beside-current chart: which of the three it is
    (model_lineage gives a role without the monitor or export privilege the profile's
    feature names and kinds only)."""
    features = profile.get("features") or {}
    if not features:
        return "profile"
    if not any("shares" in f or "value_shares" in f for f in features.values() if isinstance(f, dict)):
        return "privilege"
    return "changed"


def _compares(profile: dict, report: dict) -> list[tuple[str, str, str]]:
    """Per feature of the latest report: the training distribution beside the current one,
    over the reference's bins (deciles: each about 10 % at training) or categories."""
    out = []
    features = profile.get("features") or {}
    for f in report.get("features") or []:
        ref = (features.get(f["feature"]) if f["kind"] != "prediction"
               else profile.get("predictions") or profile.get("target"))
        current = f.get("shares")
        if not ref or current is None:
            continue
        if "shares" not in ref and "value_shares" not in ref:
            continue  # the profile's details are the owner's, export and monitor holders' (model_lineage)
        if ref.get("kind") == "categorical" and isinstance(current, dict):
            keys = sorted(set(ref["shares"]) | set(current))
            labels, r, c = keys, [ref["shares"].get(k, 0.0) for k in keys], [current.get(k, 0.0) for k in keys]
        elif ref.get("values") is not None:
            labels = [charts._fmt(v) for v in ref["values"]] + ["other"]
            r, c = list(ref["value_shares"]) + [0.0], list(current)
        else:
            edges = ref.get("edges") or []
            labels = [f"<{charts._fmt(edges[0])}"] + [f"≥{charts._fmt(e)}" for e in edges] if edges else []
            r, c = list(ref.get("shares") or []), list(current)
        if len(labels) == len(r) == len(c):
            out.append((f["feature"], f["status"], charts.compare(labels, r, c, f"{f['feature']}: training vs current")))
    return out
