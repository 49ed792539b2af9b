"""``opsearch report``: the HTML page names every workload, its PNGs are valid and render in a browser,
its numbers match the database, and empty/unreachable/unwritable cases behave.

The database is synthetic but valid: every record's trace is a real schedule of its workload
(the default schedule and hand-made splits) that replays, with fresh random latencies.
"""

from __future__ import annotations

import html
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from opsearch import ops
from tests.db.conftest import _pg_admin_engine, pg_database  # noqa: F401 - the PostgreSQL session fixture

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")
TARGET = "llvm:znver3"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TUNED = [
    ("dilated_conv1d", dict(x=[1, 8, 32], weight=[8, 8, 3])),
    ("dilated_conv1d", dict(x=[1, 6, 37], weight=[6, 6, 5], dilation=2, causal=True)),
    ("adder_conv2d", dict(x=[1, 4, 9, 9], weight=[4, 4, 3, 3], padding=1)),
]
# Baselines only, never tuned here (as `opsearch bench` may leave it).
BENCHED_ONLY = ("dilated_conv2d", dict(x=[1, 4, 11, 11], weight=[4, 4, 3, 3], padding=2, dilation=2))


def _run(*args, timeout=300):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout)


def _schedules(wl):
    """Seven distinct real schedules of ``wl``: the default one and splits of the output loop."""
    import tvm

    from opsearch.ops.tir import default_schedule, ir_module

    out = [default_schedule(wl, TARGET)]
    for factor in (2, 4, 8):
        for parallel in (False, True):
            sch = tvm.s_tir.Schedule(ir_module(wl))
            loops = sch.get_loops(sch.get_output_blocks(sch.get_sblock("root"))[0])
            sch.split(loops[-1], [None, factor])
            if parallel:
                sch.parallel(loops[0])
            out.append(sch)
    return out


@pytest.fixture(scope="module")
def report_db(tmp_path_factory):
    """(url, expected): a database with three tuned workloads, baselines, a stored cost model."""
    pytest.importorskip("matplotlib", reason="the report needs the 'plots' extra (matplotlib)")
    from opsearch import db as dbmod
    from opsearch.costmodel import XGBCostModel
    from opsearch.costmodel.dataset import load_groups
    from opsearch.db.replay import module_hash, trace_json

    seed = int.from_bytes(os.urandom(4), "little")
    print(f"latency seed={seed}")
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    db = dbmod.connect(url)
    expected = {}
    for i, (name, args) in enumerate(TUNED):
        wl = ops.get(name).workload(**args)
        scheds = _schedules(wl)
        lat = [rng.uniform(5.0, 500.0) for _ in scheds]
        # A failure first: the curve starts only at the first measured trial.
        db.add_record(wl, TARGET, module_hash=f"failed-{i}", status="run_error", error="injected",
                      trace=trace_json(scheds[0]))
        for sch, t in zip(scheds, lat):
            db.add_record(wl, TARGET, module_hash=module_hash(sch.mod), run_us=[t * 0.99, t * 1.01],
                          trace=trace_json(sch))
        expected[wl] = {"best": min(lat), "pytorch": rng.uniform(5.0, 500.0), "latencies": lat}
    wls = list(expected)
    db.add_baseline(wls[0], TARGET, "pytorch", expected[wls[0]]["pytorch"])
    db.add_baseline(wls[0], TARGET, "tvm-default", rng.uniform(5.0, 500.0))
    db.add_baseline(wls[1], TARGET, "pytorch", expected[wls[1]]["pytorch"])
    expected[wls[1]]["tuned"] = rng.uniform(5.0, 500.0)  # bench's measurement wins over the search's best
    db.add_baseline(wls[1], TARGET, "opsearch-tuned", expected[wls[1]]["tuned"])
    benched = ops.get(BENCHED_ONLY[0]).workload(**BENCHED_ONLY[1])
    for impl in ("pytorch", "tvm-default", "opsearch-tuned", "stock-metaschedule"):
        db.add_baseline(benched, TARGET, impl, rng.uniform(5.0, 500.0))
    model = XGBCostModel()
    for key, (x, secs) in load_groups(db, "llvm").items():
        model.add(key, x, secs)
    model.fit()
    db.save_cost_model("llvm", model.to_bytes(), format="xgboost-json", n_samples=model.size,
                       metrics=model.metadata())
    db.close()
    return url, expected, benched


@pytest.fixture(scope="module")
def report_page(report_db, tmp_path_factory):
    url, _, _ = report_db
    out = tmp_path_factory.mktemp("page") / "site"
    p = _run("report", "--db", url, "--out", str(out))  # the only stored target is the default
    assert p.returncode == 0, p.stderr
    return out / "index.html"


@pytest.fixture(scope="module")
def stock_page(report_db, tmp_path_factory):
    """(page, {workload: stock latencies in measurement order}): the report with a stock database
    holding records of the first two tuned workloads (the second one with a failure first)."""
    from opsearch import db as dbmod
    from opsearch.db.replay import module_hash, trace_json

    url, expected, _ = report_db
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    d = tmp_path_factory.mktemp("stock")
    stock_url = f"sqlite:///{d / 'stock.db'}"
    stock = {}
    with dbmod.connect(stock_url) as db:
        for i, wl in enumerate(list(expected)[:2]):
            scheds = _schedules(wl)
            if i == 1:
                db.add_record(wl, TARGET, module_hash="stock-failed", status="build_error", error="injected",
                              trace=trace_json(scheds[0]))
            # around our latencies, so our search reaches stock's best somewhere or never
            lat = [rng.uniform(0.8, 1.6) * min(expected[wl]["latencies"]) for _ in scheds]
            for sch, t in zip(scheds, lat):
                db.add_record(wl, TARGET, module_hash=module_hash(sch.mod), run_us=[t], trace=trace_json(sch))
            stock[wl] = [None] + lat if i == 1 else lat
    out = d / "site"
    p = _run("report", "--db", url, "--stock-db", stock_url, "--out", str(out), "--no-model-eval")
    assert p.returncode == 0, p.stderr
    return out / "index.html", stock


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG after checking its signature, every chunk's CRC, the end chunk and
    that the image data inflates to exactly height rows of width pixels."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in {kind!r}"
        chunks.append(kind)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and idat
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    if interlace == 0:
        assert len(zlib.decompress(idat)) == height * (1 + (width * channels * depth + 7) // 8)
    return width, height


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_page_names_every_workload_and_its_pngs_are_valid(report_page, report_db):
    _, expected, benched = report_db
    page = report_page.read_text(encoding="utf-8")
    for wl in [*expected, benched]:
        assert html.escape(wl.short()) in page, wl.short()
    assert TARGET in page and "sqlite:///" in page
    imgs = _images(page)
    assert sorted(imgs) == ["curves_adder_conv2d.png", "curves_dilated_conv1d.png", "speedup.png"]
    for src in imgs:
        path = report_page.parent / src
        assert path.is_file() and path.stat().st_size > 0
        w, h = _png_size(path)
        assert w > 100 and h > 50


def test_table_numbers_match_the_database(report_page, report_db):
    _, expected, _ = report_db
    page = report_page.read_text(encoding="utf-8")
    first, second, third = expected.values()
    # Speedup vs PyTorch: from the search's best record, and from bench's opsearch-tuned latency.
    assert f"{first['pytorch'] / first['best']:.2f}\u00d7" in page
    assert f"{second['pytorch'] / second['tuned']:.2f}\u00d7" in page
    assert f"{third['best']:,.2f}*" in page  # tuned column falls back to the best record (marked)
    assert "\u2014" in page  # missing baselines are dashes
    assert page.count("<tr><td") >= 4


def test_stock_database_adds_its_curves_column_and_trials_to_its_best(stock_page, report_db):
    """Stock's best record fills the stock column (marked *, no bench baseline), the speedup over it
    and the trials our search needed to reach it are computed from the two databases' records."""
    _, expected, benched = report_db
    page_path, stock = stock_page
    page = page_path.read_text(encoding="utf-8")
    assert "stock MetaSchedule database" in page and "Dashed: stock MetaSchedule" in page
    assert "trials to stock&#x27;s best" in page
    rows = {}
    for row in re.findall(r"<tr><td class=\"l\">([^<]+)</td>((?:<td>[^<]*</td>)+)</tr>", page):
        rows[html.unescape(row[0])] = [html.unescape(c) for c in re.findall(r"<td>([^<]*)</td>", row[1])]
    for wl, lat in stock.items():
        ours = [None] + expected[wl]["latencies"]  # a failure first, then the schedules in order
        stock_best = min(v for v in lat if v is not None)
        reach = next((i + 1 for i in range(len(ours)) if ours[i] is not None
                      and min(v for v in ours[:i + 1] if v is not None) <= stock_best), None)
        cells = rows[wl.short()]
        assert cells[4] == f"{stock_best:,.2f}*", cells
        assert cells[-1] == f"{reach if reach else f'not in {len(ours)}'} ({lat.index(stock_best) + 1})", cells
        tuned = expected[wl].get("tuned", expected[wl]["best"])
        assert cells[-2] == f"{stock_best / tuned:.2f}\u00d7", cells
    third = list(expected)[2]
    assert rows[third.short()][-1] == "\u2014" and rows[third.short()][4] == "\u2014"
    assert rows[benched.short()][4] != "\u2014" and not rows[benched.short()][4].endswith("*")  # bench's baseline
    imgs = _images(page)
    assert "curves_adder_conv2d.png" in imgs and "curves_dilated_conv1d.png" in imgs
    for src in imgs:
        w, h = _png_size(page_path.parent / src)
        assert w > 100 and h > 50


def test_unreachable_stock_database_is_one_line_exit_2(report_db, tmp_path):
    url, _, _ = report_db
    p = _run("report", "--db", url, "--stock-db", "postgresql://someone:hunter2@127.0.0.1:1/nodb",
             "--out", str(tmp_path / "site"), "--no-model-eval")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "cannot reach database" in lines[0] and "hunter2" not in lines[0]


def test_cost_model_section(report_page):
    page = report_page.read_text(encoding="utf-8")
    assert "Newest stored model: format xgboost-json" in page
    rows = re.findall(r"<tr><td class=\"l\">([^<]+)</td><td>([0-9.]+)</td>", page)
    names = {name for name, _ in rows}
    assert "opsearch XGBoost, leave-one-workload-out" in names and "random ranking" in names
    assert all(0.0 <= float(acc) <= 1.0 for _, acc in rows)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium): "
                                             "the page is not rendered in a browser")
def test_every_image_renders_in_headless_chromium(report_page, tmp_path):
    """Chromium loads a copy of the page with a script that marks each image rendered or not."""
    site = report_page.parent
    mark = ("<script>window.addEventListener('load', () => { for (const i of document.images) "
            "i.setAttribute('data-rendered', i.complete && i.naturalWidth > 0 ? 'yes' : 'no'); "
            "document.body.setAttribute('data-checked', 'yes'); });</script>")
    probe = site / "_browser_check.html"
    probe.write_text(report_page.read_text(encoding="utf-8").replace("</body>", mark + "</body>"), encoding="utf-8")
    try:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            f"--user-data-dir={tmp_path}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                           capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    dom = p.stdout
    assert 'data-checked="yes"' in dom, (p.returncode, p.stderr[-2000:])
    n = len(_images(report_page.read_text(encoding="utf-8")))
    assert dom.count('data-rendered="yes"') == n and 'data-rendered="no"' not in dom, dom


def test_empty_database_says_nothing_is_tuned(tmp_path):
    out = tmp_path / "site"
    p = _run("report", "--db", f"sqlite:///{tmp_path / 'empty.db'}", "--target", TARGET, "--out", str(out))
    assert p.returncode == 0, p.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Nothing tuned yet" in page and page.rstrip().endswith("</html>") and "<img" not in page


def test_other_target_is_empty_and_lists_the_stored_one(report_db, tmp_path):
    url, _, _ = report_db
    p = _run("report", "--db", url, "--target", "cuda:sm_90", "--out", str(tmp_path / "site"))
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Nothing tuned yet for cuda:sm_90" in page and TARGET in page


def test_unreachable_database_is_one_line_exit_2(tmp_path):
    p = _run("report", "--db", "postgresql://someone:hunter2@127.0.0.1:1/nodb", "--out", str(tmp_path / "site"))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "cannot reach database" in lines[0] and "hunter2" not in lines[0]


def test_unwritable_directory_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    p = _run("report", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--target", TARGET, "--out", str(blocker / "site"))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "cannot write the report" in lines[0]


@pytest.mark.postgres
def test_postgresql_database_with_a_masked_password(report_db, pg_database, tmp_path):  # noqa: F811
    import io
    import uuid

    import sqlalchemy as sa

    from opsearch import db as dbmod

    url, expected, benched = report_db
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine(pg_database.render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    # A password in the URL (ignored by trust authentication) must not reach the page.
    pg = pg_database.set(password=pg_database.password or "hunter2").update_query_dict(
        {"options": f"-csearch_path={schema}"})
    secret, pg_url = pg.password, pg.render_as_string(hide_password=False)
    with dbmod.connect(url) as src, dbmod.connect(pg_url) as dst:
        buf = io.StringIO()
        src.export(buf)
        buf.seek(0)
        assert dst.import_(buf, replay=False).imported == src.count()
        for w in src.workloads():
            for impl, us in src.baselines(w.workload, TARGET).items():
                dst.add_baseline(w.workload, TARGET, impl, us)
    out = tmp_path / "site"
    p = _run("report", "--db", pg_url, "--target", TARGET, "--out", str(out), "--no-model-eval")
    assert p.returncode == 0, p.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "postgresql+psycopg://" in page and str(secret) not in page and "***" in page
    for wl in [*expected, benched]:
        assert html.escape(wl.short()) in page, wl.short()
    assert all((out / src).stat().st_size > 0 for src in _images(page))


def test_best_so_far_skips_failures_until_the_first_measurement():
    from opsearch.db import Record
    from opsearch.bench.report import best_so_far

    wl = ops.get(*TUNED[0][:1]).workload(**TUNED[0][1])
    recs = [Record.new(wl, TARGET, "a", status="build_error"), Record.new(wl, TARGET, "b", run_us=[7.0, 9.0]),
            Record.new(wl, TARGET, "c", run_us=[12.0]), Record.new(wl, TARGET, "d", status="run_error"),
            Record.new(wl, TARGET, "e", run_us=[3.0])]
    assert best_so_far(recs) == (None, 8.0, 8.0, 8.0, 3.0)
