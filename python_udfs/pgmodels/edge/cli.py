"""``pgmodels edge``: export a bundle to a directory, print the public key, verify a bundle.

    pgmodels edge export PROJECT [--version N] --out DIR [--option ort|float16|int8 --check-relation REL]
    pgmodels edge options PROJECT --check-relation REL
    pgmodels edge public-key
    pgmodels edge verify DIR --public-key HEX [--project NAME]

The bundle's files are written under fixed names (manifest.json, model.onnx,
manifest.sig), never under names read from the archive, so a bundle cannot write
anywhere else; DIR is written whole into a new directory beside it and renamed into
place, and an existing DIR is replaced only when it holds exactly a bundle's three files.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ..errors import INVALID_PARAMETER_VALUE, UNDEFINED_OBJECT, PgmodelsError

BUNDLE_FILES = {"manifest.json", "manifest.sig", "model.onnx"}


def add_parser(sub) -> None:
    edge = sub.add_parser("edge", help="signed model bundles for devices and browsers")
    esub = edge.add_subparsers(dest="action", required=True)
    ex = esub.add_parser("export", help="write the deployed (or a given) version's signed bundle to a directory")
    ex.add_argument("project")
    ex.add_argument("--version", type=int, help="the project's model version (default: the deployed one)")
    ex.add_argument("--out", required=True, help="directory to write (manifest.json, model.onnx, manifest.sig)")
    ex.add_argument("--option", choices=["ort", "float16", "int8"],
                    help="make it smaller (refused if any class changes on the --check-relation rows)")
    ex.add_argument("--check-relation", help="rows to check a --option on: the model's test split, say")
    ex.add_argument("--dsn", help="database (default: $PGMODELS_DSN, else the embedded cluster)")
    op = esub.add_parser("options", help="what each size option makes of a bundle, checked on a relation's rows")
    op.add_argument("project")
    op.add_argument("--check-relation", required=True)
    op.add_argument("--version", type=int)
    op.add_argument("--dsn", help="database (default: $PGMODELS_DSN, else the embedded cluster)")
    pk = esub.add_parser("public-key", help="print the public key devices pin (64 hex digits)")
    pk.add_argument("--dsn", help="database (default: $PGMODELS_DSN, else the embedded cluster)")
    ve = esub.add_parser("verify", help="verify a bundle directory against a public key (no database)")
    ve.add_argument("dir")
    ve.add_argument("--public-key", help="64 hex digits (default: $PGMODELS_EDGE_PUBLIC_KEY)")
    ve.add_argument("--project", help="the project the bundle must be of (one server key signs every project's)")


def _model_id(conn, project: str, version: int | None) -> int | None:
    if version is None:
        return None
    row = conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND version = %s",
                       [project, version]).fetchone()
    if row is None:
        raise PgmodelsError(f'project "{project}" has no version {version}',
                            hint="See pgmodels.overview for the versions there are.", sqlstate=UNDEFINED_OBJECT)
    return row[0]


def write_bundle(data: bytes, out: str, public_key: str) -> dict:
    """Verify the archive, then write its three files into ``out`` atomically."""
    from pgmodels_edge import EdgeError, bundle

    try:
        manifest_bytes, signature, model = bundle.unpack(data)
        manifest = bundle.verify(manifest_bytes, signature, model, public_key)
    except EdgeError as e:
        raise PgmodelsError(e.message, detail=e.detail, hint=e.hint, sqlstate=e.sqlstate) from None
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise PgmodelsError(f"{out} exists and is not a directory", sqlstate=INVALID_PARAMETER_VALUE)
    if os.path.isdir(out) and os.listdir(out) and set(os.listdir(out)) != BUNDLE_FILES:
        # only a directory holding exactly a bundle's files is replaced (a web app's folder
        # with its own manifest.json is not a bundle)
        raise PgmodelsError(f"{out} is not empty and holds no bundle (only {', '.join(sorted(BUNDLE_FILES))})",
                            hint="Give a new directory, or one a previous export wrote.", sqlstate=INVALID_PARAMETER_VALUE)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pgmodels-bundle-", dir=parent)
    try:
        bundle.write_dir(tmp, manifest_bytes, signature, model)
        if os.path.isdir(out):
            old = tmp + ".old"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def run_command(args, connect) -> int:
    if args.action == "verify":
        from pgmodels_edge import EdgeError, EdgeModel

        try:
            model = EdgeModel.load(args.dir, args.public_key, args.project)
        except EdgeError as e:
            raise PgmodelsError(e.message, detail=e.detail, hint=e.hint, sqlstate=e.sqlstate) from None
        print(f"ok: {model.describe()}, sha256 {model.sha256}, signed by key {model.manifest['signed_by']['key_id']}")
        return 0
    with connect(args.dsn) as conn:
        if args.action == "public-key":
            print(conn.execute("SELECT edge_public_key()").fetchone()[0])
            return 0
        model_id = _model_id(conn, args.project, args.version)
        if args.action == "options":
            rows = conn.execute("SELECT * FROM edge_bundle_options(%s, %s::regclass, %s)",
                                [args.project, args.check_relation, model_id]).fetchall()
            for r in rows:
                print(f"{r[0]:<8} " + (f"{r[1]:>9} bytes (from {r[2]}), largest difference {r[3]:.3g}, "
                                       f"classes changed {r[4]} of {r[5]} rows" if r[1] is not None else "")
                      + (f"  {r[7]}" if r[7] else ""))
            return 0
        if args.option:
            data = conn.execute("SELECT export_bundle(%s, %s, %s, %s::regclass)",
                                [args.project, model_id, args.option, args.check_relation]).fetchone()[0]
        else:
            data = conn.execute("SELECT export_bundle(%s, %s)", [args.project, model_id]).fetchone()[0]
        key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    manifest = write_bundle(bytes(data), args.out, key)
    print(f"{os.path.abspath(args.out)}: version {manifest['version']} of \"{manifest['project']}\" "
          f"(model {manifest['model_id']}), model.onnx {manifest['artifact']['bytes']} bytes, "
          f"sha256 {manifest['artifact']['sha256'][:16]}..., signed by key {manifest['signed_by']['key_id']}")
    return 0
