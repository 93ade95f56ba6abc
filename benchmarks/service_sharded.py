"""``audiodup serve --dask`` against the service on the whole catalog, on a split catalog
(issue #14). Not run in CI.

    python -m benchmarks.service_sharded SPLIT_CATALOG --queries QUERIES.pkl [--n 20]
        [--out FILE.jsonl]

Both services are the application ``audiodup serve`` runs, in this process (Starlette's test
client, no sockets): one screens the catalog itself, the other over its shard groups on a
LocalCluster of one worker process (one thread) per group. The first ``n / 2`` positives and
negatives of the queries (``benchmarks.scaling_prints`` pickles: each query's audio file) are
posted to ``/v1/screen`` of both; their answers without the timing fields must be the same.
Prints the wall time of each request (p50, p95; the first request of each service is left out:
it waits for the catalog to open) and whether the service on Dask loaded an index. The API key
lives in a temporary file; the services write their rate-limit database under the catalog's
``service/`` folder, as ``audiodup serve`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audiodup import Catalog
from audiodup.errors import AudiodupError
from audiodup.results import TIMING_FIELDS


def _queries(path: Path, n: int) -> list:
    """The first ``n / 2`` positives and the first ``n - n / 2`` negatives of the pickle."""
    queries = [query for query, _ in pickle.loads(path.read_bytes())]
    positives = [q for q in queries if q.role == "positive"][: n // 2]
    negatives = [q for q in queries if q.role == "negative"][: n - len(positives)]
    if not positives and not negatives:
        raise ValueError(f"no query in {path}")
    return positives + negatives


@contextlib.contextmanager
def _service(catalog: Path, key_file: Path, **config) -> Iterator:
    from fastapi.testclient import TestClient

    from audiodup.service.app import create_app
    from audiodup.service.config import load_config

    settings = load_config(None, {"db": catalog, "key_file": key_file, **config}, environ={})
    app = create_app(settings, open_in_background=True)
    with TestClient(app) as http:
        yield app, http


def _answers(app, http, key: str, queries: list) -> list[dict]:
    rows = []
    for query in queries:
        path = Path(query.path)
        start = time.perf_counter()
        response = http.post(
            "/v1/screen",
            files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
            headers={"Authorization": f"Bearer {key}"},
        )
        wall = time.perf_counter() - start
        body = response.json()
        entry = body["results"][0] if response.status_code == 200 else body
        answer = {k: v for k, v in entry.items() if k not in TIMING_FIELDS}
        rows.append({"status": response.status_code, "answer": answer, "wall_s": wall})
    catalog = app.state.engine._catalog
    loaded = catalog is not None and catalog._indexes is not None
    for row in rows:
        row["index_loaded"] = loaded
    return rows


def _both(catalog: Path, queries: list, groups: int) -> dict[str, list[dict]]:
    """Each service's answers: on the whole catalog, then over the shard groups."""
    import distributed

    from audiodup.service.auth import KeyFile

    with (
        tempfile.TemporaryDirectory() as scratch,
        distributed.LocalCluster(
            n_workers=groups, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        key_file = Path(scratch) / "keys.json"
        key = KeyFile(key_file).create("service-sharded-bench", ["screen"])
        runs = {}
        for name, config in (("whole", {}), ("dask", {"dask": cluster.scheduler_address})):
            with _service(catalog, key_file, **config) as (app, http):
                runs[name] = _answers(app, http, key, queries)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service_sharded")
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        with Catalog.open(args.catalog, create=False) as catalog:
            groups = catalog.store.shard_groups()
        if not groups:
            raise ValueError(f"catalog {args.catalog} is not split ('audiodup index shard')")
        queries = _queries(args.queries, args.n)
    except (AudiodupError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = _both(args.catalog, queries, groups)
    whole, dask = runs["whole"], runs["dask"]
    same = sum(
        a["answer"] == b["answer"] and a["status"] == b["status"]
        for a, b in zip(whole, dask, strict=True)
    )
    if args.out is not None:
        with open(args.out, "w") as handle:
            for query, a, b in zip(queries, whole, dask, strict=True):
                row = {"query_id": query.query_id, "role": query.role, "whole": a, "dask": b}
                handle.write(json.dumps(row) + "\n")
    print(f"{len(queries)} uploads, {groups} shard groups: the same answer for {same}")
    for name, rows in runs.items():
        walls = np.array([r["wall_s"] for r in rows[1:]] or [rows[0]["wall_s"]]) * 1000
        verdicts = [r["answer"].get("verdict", r["status"]) for r in rows]
        counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
        print(
            f"  {name}: request wall p50 {np.percentile(walls, 50):.0f} ms, "
            f"p95 {np.percentile(walls, 95):.0f} ms; verdicts {counts}; "
            f"index loaded in the service: {rows[0]['index_loaded']}"
        )
    return 0 if same == len(queries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
