"""Fault figures of the schedule database under real tuning runs.

    python benchmarks/fault_bench.py kill [--kills 10] [--seed 0]
    python benchmarks/fault_bench.py concurrent [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
    python benchmarks/fault_bench.py rpc-kill

``kill``: a tune of one small workload (``opsearch tune``, 64 trials, batches of 8) into a fresh
SQLite file is SIGKILLed (its whole process group, runner workers included) at ``--kills``
random moments, restarting after each; then it runs to completion. After every kill: SQLite's
``PRAGMA integrity_check``, the number of records and of distinct candidates (module hashes).
At the end: whether the budget was reached, and whether the completing run measured only
candidates not yet stored (its trials equal the records it added). Work lost per kill: the
seconds between the killed run's last stored record (or its start) and the kill, against the
longest gap between two stored batches (one batch's work).

``concurrent``: 4 tunes of 4 workloads (16 trials each) start at once on one SQLite file and, with
``--pg``, on one fresh PostgreSQL database: every run's exit status, any ``database is locked``
message, and whether each workload holds exactly the trials its run reported.

``rpc-kill``: a tune measuring through a real TVM RPC tracker and server (127.0.0.1:9190/9300)
whose server is SIGKILLed once the first batch is stored: how the tune ends, and the records by
status before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

EXE = str(Path(sys.executable).with_name("opsearch"))
OP = "dilated_conv1d"


def _args(d: int) -> str:
    return json.dumps({"x": [1, 16, 256], "weight": [16, 16, 3], "dilation": d})


def _tune(url: str, d: int, trials: int, env: dict, out: str) -> subprocess.Popen:
    cmd = [EXE, "tune", OP, "--args", _args(d), "--trials", str(trials), "--batch", "8", "--db", url,
           "--out", out, "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _counts(path: str) -> tuple[str, int, int]:
    con = sqlite3.connect(path)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        n, distinct = con.execute("SELECT count(*), count(DISTINCT module_hash) FROM records").fetchone()
    finally:
        con.close()
    return ok, n, distinct


def _epoch(t) -> float:
    """A stored ``created_at`` (ISO text; UTC when it has no zone) as epoch seconds."""
    from datetime import datetime, timezone

    d = datetime.fromisoformat(str(t))
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


def _last_stored(path: Path) -> float | None:
    """Wall time (epoch seconds) of the newest record, or None."""
    if not path.exists():
        return None
    con = sqlite3.connect(path)
    try:
        (t,) = con.execute("SELECT max(created_at) FROM records").fetchone()
    except sqlite3.OperationalError:
        t = None
    finally:
        con.close()
    return None if t is None else _epoch(t)


def _batch_gap(path: Path) -> float:
    """The longest gap between two consecutive stored batches of one run (records of a batch are
    stored together, within a second)."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT run_id, created_at FROM records ORDER BY run_id, created_at").fetchall()
    finally:
        con.close()
    gaps, prev = [], None
    for run, t in rows:
        ts = _epoch(t)
        if prev is not None and prev[0] == run and ts - prev[1] > 1.0:
            gaps.append(ts - prev[1])
        prev = (run, ts)
    return max(gaps, default=0.0)


def kill(args) -> None:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="opsearch-kill-"))
    path = tmp / "kill.db"
    url = f"sqlite:///{path}"
    env = dict(os.environ, OPSEARCH_CACHE_DIR=str(tmp / "kernels"))
    rows, losses = [], []
    last = 0
    for i in range(args.kills):
        started = time.time()
        p = _tune(url, 2, 64, env, str(tmp / "runs"))
        at = rng.uniform(4.0, 25.0)
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < at:
            time.sleep(0.05)
        finished = p.poll() is not None
        if not finished:
            os.killpg(p.pid, signal.SIGKILL)
        killed = time.time()
        p.wait()
        newest = _last_stored(path)
        lost = None if finished else killed - max(started, newest or started)
        losses.append(lost)
        ok, n, distinct = _counts(str(path)) if path.exists() else ("no file yet", 0, 0)
        rows.append((i + 1, at, finished, ok, n, distinct))
        print(f"kill {i + 1}: at {at:5.1f} s{' (had finished)' if finished else ''}: integrity {ok}, "
              f"{n} records (+{n - last}), {distinct} distinct"
              + ("" if lost is None else f", {lost:.1f} s of work since the last stored record"), flush=True)
        last = n
    _, before, _ = _counts(str(path))
    p = _tune(url, 2, 64, env, str(tmp / "runs"))
    out, err = p.communicate()
    ok, n, distinct = _counts(str(path))
    res = json.loads(out)["results"][0] if p.returncode == 0 and out.strip().startswith("{") else {}
    ran, cached = res.get("trials_run"), res.get("cached")
    print(f"completing run: exit {p.returncode}, {ran} trials ({cached} answered from the database), "
          f"records {before} -> {n} ({distinct} distinct), integrity {ok}")
    corrupt = sum(r[3] != "ok" for r in rows if r[3] != "no file yet")
    measured = None if ran is None else ran - (cached or 0)
    lost = [x for x in losses if x is not None]
    gap = _batch_gap(path)
    print("\n| kills | corrupt databases | duplicate records | completing run: trials / from the database / measured / records added "
          "| work lost per kill: median / max s | longest gap between stored batches s |")
    print("| ---: | ---: | ---: | --- | --- | ---: |")
    print(f"| {args.kills} | {corrupt} | {n - distinct} | {ran} / {cached} / {measured} / {n - before} "
          f"| {sorted(lost)[len(lost) // 2] if lost else 0:.1f} / {max(lost, default=0):.1f} | {gap:.1f} |")


def _pg_url(base: str) -> tuple[str, callable]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from opsearch.db.engine import resolve_url

    name = f"opsearch_fault_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(resolve_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(resolve_url(base)).set(database=name).render_as_string(hide_password=False), drop


def concurrent(args) -> None:
    import opsearch
    import opsearch.db

    tmp = Path(tempfile.mkdtemp(prefix="opsearch-conc-"))
    env = dict(os.environ, OPSEARCH_CACHE_DIR=str(tmp / "kernels"))
    targets = [("SQLite", f"sqlite:///{tmp / 'conc.db'}", None)]
    if args.pg:
        url, drop = _pg_url(args.pg)
        targets.append(("PostgreSQL", url, drop))
    print("| database | runs | exit 0 | 'database is locked' | records = trials run, per workload | wall s |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for label, url, drop in targets:
        subprocess.run([EXE, "db", "upgrade", "--db", url], check=True, capture_output=True, env=env)
        t0 = time.monotonic()
        procs = [_tune(url, d, 16, env, str(tmp / f"runs{d}")) for d in (1, 2, 4, 8)]
        outs = [p.communicate() for p in procs]
        wall = time.monotonic() - t0
        locked = sum("database is locked" in err for _, err in outs)
        ran = {}
        for (out, _), d in zip(outs, (1, 2, 4, 8)):
            try:
                ran[d] = json.loads(out)["results"][0]["trials_run"]
            except (ValueError, IndexError, KeyError):
                ran[d] = None
        db = opsearch.db.connect(url)
        op = opsearch.ops.get(OP)
        stored = {d: db.count(op.workload(**json.loads(_args(d))), "cpu") for d in (1, 2, 4, 8)}
        db.close()
        same = all(ran[d] == stored[d] for d in stored)
        print(f"| {label} | 4 | {sum(p.returncode == 0 for p in procs)} | {locked} | "
              f"{'yes' if same else 'no'} ({', '.join(f'{stored[d]}/{ran[d]}' for d in stored)}) | {wall:.0f} |", flush=True)
        if drop:
            drop()


def rpc_kill(args) -> None:
    """A tune measuring through a real TVM RPC tracker and server on 127.0.0.1; the server is
    killed once the first batch is stored. The tune must finish or stop with a one-line error,
    and nothing measured after the kill may be stored as ok."""
    tmp = Path(tempfile.mkdtemp(prefix="opsearch-rpc-"))
    path = tmp / "rpc.db"
    url = f"sqlite:///{path}"
    env = dict(os.environ, OPSEARCH_CACHE_DIR=str(tmp / "kernels"))
    py = sys.executable
    tracker = subprocess.Popen([py, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", "9190",
                                "--port-end", "9290"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    time.sleep(3)
    server = subprocess.Popen([py, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", "9300",
                               "--port-end", "9400", "--tracker", "127.0.0.1:9190", "--key", "fault"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(5)
    try:
        cmd = [EXE, "tune", OP, "--args", _args(2), "--trials", "48", "--batch", "8", "--db", url,
               "--rpc", "127.0.0.1:9190:fault", "--out", str(tmp / "runs"), "--json"]
        t0 = time.monotonic()
        tune = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        before = None
        while tune.poll() is None and time.monotonic() - t0 < 300:
            if path.exists():
                con = sqlite3.connect(path)
                try:
                    rows = con.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall()
                except sqlite3.OperationalError:
                    rows = []
                con.close()
                if sum(n for _, n in rows) >= 8:
                    before = dict(rows)
                    break
            time.sleep(0.2)
        killed_at = time.monotonic() - t0
        os.killpg(server.pid, signal.SIGKILL)
        try:
            out, err = tune.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(tune.pid, signal.SIGKILL)
            out, err = tune.communicate()
        wall = time.monotonic() - t0
        con = sqlite3.connect(path)
        after = dict(con.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall())
        con.close()
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        print(f"server killed {killed_at:.1f} s into the tune, records by status then: {before}")
        print(f"tune: exit {tune.returncode} after {wall:.0f} s; stderr's last line: {lines[-1] if lines else ''}")
        print(f"records by status at the end: {after}; ok records added after the kill: "
              f"{after.get('ok', 0) - (before or {}).get('ok', 0)}")
        print(f"tracebacks on stderr: {err.count('Traceback')}")
    finally:
        for proc in (server, tracker):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kill")
    k.add_argument("--kills", type=int, default=10)
    k.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("concurrent")
    c.add_argument("--pg", default=None, help="PostgreSQL server URL (a fresh database is created and dropped)")
    sub.add_parser("rpc-kill")
    args = ap.parse_args()
    {"kill": kill, "concurrent": concurrent, "rpc-kill": rpc_kill}[args.cmd](args)


if __name__ == "__main__":
    main()
