"""Schedule-database benchmark: bulk insert, best-record lookup latency, export and import rates.

Inserts N synthetic records (1,000 workloads x 2 targets x N/2000 candidates each, realistic
2.5 kB traces), then times ``Database.best`` on random workloads (median/p95 over LOOKUPS
calls), an export of everything, and an import into a fresh database (without trace replay,
which needs real traces; see RESULTS.md for its cost).

    python benchmarks/db_bench.py                                   # SQLite in a temp dir
    python benchmarks/db_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
import uuid

import opsearch.db
import opsearch.ops
from opsearch.db import Record

TARGETS = ("llvm:znver3", "cuda:sm_90")
# A trace the allow-list accepts (opsearch.db.validate: every input defined by an earlier
# instruction), else import would reject every line and time nothing but the rejections.
TRACE = [[["GetSBlock", [], ["conv", "main"], ["b0"]], ["GetLoops", ["b0"], [], ["l1", "l2", "l3"]],
          ["SamplePerfectTile", ["l3"], [4, 64], ["v8", "v9", "v10", "v11"]]] * 15, [[2, [1, 2, 4, 4]]] * 5]


def workloads(n: int):
    op = opsearch.ops.get("dilated_conv1d")
    return [op.workload(x=[1, 8 * (1 + i % 8), 32 * (1 + i // 8)], weight=[8 * (1 + i % 8)] * 2 + [3]) for i in range(n)]


def fill(db, wls, per_pair: int) -> float:
    rng = random.Random(0)
    recs = [Record.new(wl, t, f"{i}-{t}-{k}", run_us=[rng.uniform(5, 500) for _ in range(3)], trace=TRACE)
            for i, wl in enumerate(wls) for t in TARGETS for k in range(per_pair)]
    t0 = time.perf_counter()
    for i in range(0, len(recs), 5000):
        db.add_records(recs[i:i + 5000])
    return len(recs) / (time.perf_counter() - t0)


def lookups(db, wls, n: int) -> list[float]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        wl, t = rng.choice(wls), rng.choice(TARGETS)
        t0 = time.perf_counter()
        assert db.best(wl, t, shipped=False) is not None
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench(url: str, fresh_url: str, n_records: int, n_lookups: int) -> dict:
    wls = workloads(1000)
    db = opsearch.db.connect(url)
    insert_rate = fill(db, wls, max(1, n_records // (len(wls) * len(TARGETS))))
    lookups(db, wls, 20)  # warm the pool and caches
    lat = sorted(lookups(db, wls, n_lookups))
    buf = io.StringIO()
    t0 = time.perf_counter()
    n = db.export(buf)
    export_rate = n / (time.perf_counter() - t0)
    other = opsearch.db.connect(fresh_url)
    t0 = time.perf_counter()
    rep = other.import_(io.StringIO(buf.getvalue()), replay=False)
    import_rate = rep.imported / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    again = other.import_(io.StringIO(buf.getvalue()), replay=False)
    reimport_rate = again.lines / (time.perf_counter() - t0)
    return {"backend": db.backend, "records": db.count(), "insert_per_s": round(insert_rate),
            "best_median_ms": round(statistics.median(lat), 3), "best_p95_ms": round(lat[int(0.95 * len(lat))], 3),
            "export_per_s": round(export_rate), "import_per_s": round(import_rate),
            "reimport_duplicates_per_s": round(reimport_rate), "lookups": n_lookups}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--pg", metavar="URL", help="PostgreSQL server URL; a scratch database is created and dropped")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    results = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as d:
            results.append(bench(f"sqlite:///{d}/a.db", f"sqlite:///{d}/b.db", args.records, args.lookups))
            print(json.dumps(results[-1]), flush=True)
    if args.pg:
        import sqlalchemy as sa

        from opsearch.db.engine import resolve_url

        admin = sa.create_engine(resolve_url(args.pg), isolation_level="AUTOCOMMIT")
        names = [f"opsearch_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
        with admin.connect() as c:
            for n in names:
                c.execute(sa.text(f'CREATE DATABASE "{n}"'))
        base = sa.engine.make_url(resolve_url(args.pg))
        try:
            urls = [base.set(database=n).render_as_string(hide_password=False) for n in names]
            results.append(bench(urls[0], urls[1], args.records, args.lookups))
            print(json.dumps(results[-1]), flush=True)
        finally:
            with admin.connect() as c:
                for n in names:
                    c.execute(sa.text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
