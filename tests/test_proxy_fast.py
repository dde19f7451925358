"""proxy/fast.py answers the infer routes in front of Starlette: it must take exactly the
requests Starlette's two infer routes would match, with the same path parameters (the
requests themselves are driven end to end in test_proxy*.py)."""

from __future__ import annotations

from starlette.routing import Route

from pgmodels.proxy import fast


def test_the_fast_infer_route_matches_starlettes_routes():
    routes = [Route("/v2/models/{name}/infer", None, methods=["POST"]),
              Route("/v2/models/{name}/versions/{version}/infer", None, methods=["POST"])]
    for path in ["/v2/models/m/infer", "/v2/models/m/versions/3/infer", "/v2/models//infer", "/v2/models/infer",
                 "/v2/models/m/infer/", "/v2/models/m/versions//infer", "/v2/models/m/x/3/infer",
                 "/v2/models/a b/versions/x y/infer", "/v2/models/m/versions/3/4/infer", "/v2/models/m/ready"]:
        scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
        starlette = None
        for r in routes:
            match, child = r.matches(scope)
            if match.name == "FULL":
                starlette = (child["path_params"]["name"], child["path_params"].get("version"))
                break
        assert fast.route(path) == starlette, path
