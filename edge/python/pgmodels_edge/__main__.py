"""python -m pgmodels_edge: verify a bundle and predict with it, on the device.

    python -m pgmodels_edge predict DIR --public-key HEX '{"age": 41, "plan": "pro"}' ...
    python -m pgmodels_edge sync URL DIR --public-key HEX [--project NAME] [--token T]

sync refuses a bundle of another project than --project (default: the one the URL's path
/v2/models/{name}/bundle names; one server key signs every project's bundles).

Prints one JSON line per row: prediction, and label and probabilities for classifiers.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import Device, EdgeError, EdgeModel


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pgmodels_edge")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict")
    pr.add_argument("dir")
    pr.add_argument("rows", nargs="+", help="JSON: an object by feature name, or an array in feature order")
    pr.add_argument("--public-key")
    pr.add_argument("--project", help="refuse a bundle of another project")
    sy = sub.add_parser("sync")
    sy.add_argument("url")
    sy.add_argument("dir")
    sy.add_argument("--public-key")
    sy.add_argument("--token")
    sy.add_argument("--project", help="the project the device runs (default: the one the URL names)")
    args = p.parse_args(argv)
    try:
        if args.command == "sync":
            result = Device(args.dir, args.public_key, args.url, args.token, project=args.project).sync()
            print(json.dumps({"status": result.status, "http_status": result.http_status, "error": result.error,
                              "version": result.model.version if result.model else None}))
            return 0 if result.model is not None else 1
        model = EdgeModel.load(args.dir, args.public_key, args.project)
        for text in args.rows:
            try:
                row = json.loads(text)
            except ValueError as e:
                raise EdgeError(f"a row is not JSON: {text[:60]!r}", detail=f"{e}.") from None
            out = {"prediction": model.predict(row)}
            if model.task == "classification":
                out["label"] = model.predict_label(row)
                if model.proba_output:
                    out["probabilities"] = model.predict_proba(row)
            print(json.dumps(out))
    except EdgeError as e:
        print(f"pgmodels_edge: error: {e.message}" + (f" {e.detail}" if e.detail else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
