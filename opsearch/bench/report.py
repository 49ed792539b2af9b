"""The tuning report: one static HTML page with PNG plots, built from a schedule database.

``write_report(db, target, out_dir)`` reads the database (:func:`collect`), draws the plots
(``plot_*``, matplotlib with the Agg backend) and writes ``out_dir/index.html`` (:func:`render`).
The page is self-contained: inline CSS, no scripts, images referenced by relative path.
Sections: a header (target, masked database URL, record counts, generation time), tuning curves
(best latency so far vs trials, one plot per operator), a per-workload table of opsearch's best
against the baselines that ``opsearch bench`` stores (PyTorch, TVM default schedule, stock
MetaSchedule) with a bar chart of the speedup over PyTorch, and the cost model's accuracy.

Given a second database of stock MetaSchedule's records (``opsearch tune --tuner stock``,
``write_report(..., stock_db=...)``), each workload's stock tuning curve is drawn dashed beside
ours, stock's best record fills the stock column where ``opsearch bench`` stored no baseline, and
the table says after how many trials our search matched stock's best (each side's own
measurements, as the curves are).
"""

from __future__ import annotations

import html
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import OpsearchError
from ..ops.spec import Workload

#: Baseline names written by ``opsearch bench`` (``Database.add_baseline``), in table order.
TUNED, PYTORCH, TVM_DEFAULT, STOCK_MS = "opsearch-tuned", "pytorch", "tvm-default", "stock-metaschedule"
DASH = "\u2014"
log = logging.getLogger(__name__)


class ReportError(OpsearchError):
    """The report cannot be written (output directory, missing matplotlib)."""


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class WorkloadReport:
    """One workload on the report's target: its search history and its baselines."""

    workload: Workload
    n_records: int
    n_ok: int
    best_us: float | None  # fastest ok record of the search
    curve: tuple[float | None, ...]  # best latency so far after each trial (None before the first ok)
    baselines: dict[str, float] = field(default_factory=dict)
    stock_curve: tuple[float | None, ...] = ()  # the same from the stock database, if one was given

    @property
    def tuned_us(self) -> float | None:
        """opsearch's latency: what ``opsearch bench`` measured, else the search's best record."""
        return self.baselines.get(TUNED, self.best_us)

    @property
    def stock_best_us(self) -> float | None:
        """Stock MetaSchedule's best record in the stock database (its own measurement)."""
        return next((v for v in reversed(self.stock_curve) if v is not None), None)

    @property
    def stock_us(self) -> float | None:
        """Stock's latency: what ``opsearch bench`` measured, else the stock database's best record."""
        return self.baselines.get(STOCK_MS, self.stock_best_us)

    def speedup(self, baseline: str) -> float | None:
        ref = self.stock_us if baseline == STOCK_MS else self.baselines.get(baseline)
        ours = self.tuned_us
        return ref / ours if ref and ours else None

    def trials_to_stock_best(self) -> tuple[int | None, int | None]:
        """(the first trial at which our best so far is at or below stock's best, the trial at
        which stock found its best); None where there is no such trial or no stock curve."""
        target = self.stock_best_us
        if target is None:
            return None, None
        return first_reaching(self.curve, target), self.stock_curve.index(target) + 1


@dataclass(frozen=True)
class ModelReport:
    """The cost model section: the stored model (if any) and accuracy numbers (if computable)."""

    kind: str
    stored: dict | None = None  # format, n_samples, metrics of the newest stored model
    stored_eval: dict | None = None  # rank metrics of the stored model on this target's records
    held_out: dict | None = None  # {"opsearch_xgb": metrics, "random": metrics}, leave-one-workload-out
    note: str = ""


@dataclass(frozen=True)
class ReportData:
    target: str
    url: str
    generated_at: datetime
    counts: dict[str, int]
    by_status: dict[str, int]
    n_target_records: int
    other_targets: tuple[str, ...]
    workloads: tuple[WorkloadReport, ...]
    model: ModelReport
    stock_url: str | None = None  # the stock database, if one was given

    @property
    def has_stock(self) -> bool:
        return any(w.stock_curve for w in self.workloads)


def running_min(latencies) -> tuple[float | None, ...]:
    """The best latency so far after each trial (None for a failed one, and until an ok one)."""
    out, best = [], None
    for v in latencies:
        if v is not None:
            best = v if best is None else min(best, v)
        out.append(best)
    return tuple(out)


def first_reaching(curve, target: float | None) -> int | None:
    """The first trial (1-based) at which best-so-far ``curve`` is at or below ``target``."""
    if target is None:
        return None
    return next((i + 1 for i, v in enumerate(curve) if v is not None and v <= target), None)


def best_so_far(records) -> tuple[float | None, ...]:
    """The running minimum of ``mean_us`` over records in measurement order (None until an ok one)."""
    return running_min(r.mean_us if r.status == "ok" else None for r in records)


def collect(db, target: str, model_eval: bool = True, stock_db=None) -> ReportData:
    """Everything the page shows, read from ``db`` for one target (a canonical target name), with
    stock MetaSchedule's curves from ``stock_db`` (a database of ``--tuner stock`` records)."""
    info = db.info()
    counted = {w.workload: w for w in db.workloads(target=target)}
    rows = []
    for w in db.workloads():
        base = db.baselines(w.workload, target)
        mine = counted.get(w.workload)
        if mine is None and not base:
            continue
        hist = db.history(w.workload, target) if mine else []
        stock = best_so_far(stock_db.history(w.workload, target)) if stock_db is not None else ()
        rows.append(WorkloadReport(w.workload, mine.n_records if mine else 0, mine.n_ok if mine else 0,
                                   mine.best_us if mine else None, best_so_far(hist), base,
                                   stock if any(v is not None for v in stock) else ()))
    rows.sort(key=lambda r: (r.workload.op, r.workload.key()))
    others = tuple(t.name for t in db.targets() if t.name != target)
    model = model_report(db, target, rows, model_eval)
    return ReportData(target, db.url, datetime.now(timezone.utc), dict(info.counts), dict(info.records_by_status),
                      db.count(target=target), others, tuple(rows), model,
                      stock_db.url if stock_db is not None else None)


def model_report(db, target: str, rows, evaluate: bool) -> ModelReport:
    """The newest stored cost model of the target's kind and ranking accuracy on its records.

    Accuracy is measured leave-one-workload-out (as ``opsearch model eval`` does) when at least two
    workloads have two measured, replayable records; a stored model is also scored on every group.
    A failure of the evaluation (feature extraction, XGBoost) is noted on the page, not raised.
    """
    kind = target.split(":", 1)[0]
    stored = db.load_cost_model(kind)
    summary = None if stored is None else {"format": stored[0], "n_samples": stored[2], "metrics": stored[3]}
    if not evaluate:
        return ModelReport(kind, summary, note="evaluation skipped (--no-model-eval)")
    if not any(r.n_ok >= 2 for r in rows):
        return ModelReport(kind, summary, note="not enough measured records to evaluate a cost model "
                                               "(no workload has two measured records on this target)")
    try:
        return _evaluate(db, kind, target, stored, summary)
    except Exception as e:  # noqa: BLE001 - the rest of the page still stands
        log.warning("cost-model evaluation failed: %s", e)
        text = str(e).strip().splitlines()
        return ModelReport(kind, summary, note=f"evaluation failed: {text[-1] if text else type(e).__name__}")


def _evaluate(db, kind: str, target: str, stored, summary) -> ModelReport:

    from ..costmodel import XGBCostModel, evaluate as evaluate_model, leave_one_workload_out
    from ..costmodel.dataset import load_groups

    groups = {k: v for k, v in load_groups(db, kind).items() if k.endswith("@" + target)}
    stored_eval = None
    if stored is not None and groups:
        m = XGBCostModel()
        try:
            m.from_bytes(stored[1])
            stored_eval = evaluate_model(m, groups)
        except ValueError as e:  # a model of an older feature version
            summary = {**summary, "error": str(e)}
    if len(groups) < 2:
        return ModelReport(kind, summary, stored_eval, note=f"only {len(groups)} workload(s) with two replayable "
                           "records: leave-one-workload-out accuracy needs two")
    return ModelReport(kind, summary, stored_eval, leave_one_workload_out(groups))


# ----------------------------------------------------------------------------- plots
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError("the report needs matplotlib: pip install 'opsearch[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tuning_curves(op: str, curves: dict[str, tuple[float | None, ...]], path: Path,
                       stock: dict[str, tuple[float | None, ...]] | None = None) -> None:
    """One line per workload: best latency (µs, log scale) after each trial; a dot at each trial.
    ``stock`` (label -> curve) adds stock MetaSchedule's curve of a workload, dashed, in its colour."""
    plt = _pyplot()
    stock = stock or {}
    fig, ax = plt.subplots(figsize=(9, 4.2 + 0.2 * (len(curves) + len(stock))), dpi=100)
    for label in dict.fromkeys([*curves, *stock]):
        color = None
        for curve, name, style in ((curves.get(label), label, {"marker": "o", "markersize": 3}),
                                   (stock.get(label), f"{label} (stock MetaSchedule)", {"linestyle": "--"})):
            if not curve or all(v is None for v in curve):
                continue
            xs = [i + 1 for i, v in enumerate(curve) if v is not None]
            ys = [v for v in curve if v is not None]
            line, = ax.plot(xs, ys, drawstyle="steps-post", label=name, color=color, **style)
            color = line.get_color()
    ax.set_yscale("log")
    ax.set_xlabel("trials (records in measurement order)")
    ax.set_ylabel("best latency so far (µs)")
    ax.set_title(f"{op}: tuning curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", bbox_inches="tight")
    plt.close(fig)


def plot_speedups(labels: list[str], speedups: list[float], path: Path) -> None:
    """Horizontal bars of opsearch's speedup over PyTorch (labelled), with a line at 1x."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.5 * len(labels)), dpi=100)
    ys = list(range(len(labels)))
    bars = ax.barh(ys, speedups, color=["#2a7" if s >= 1 else "#c44" for s in speedups])
    ax.bar_label(bars, [f"{s:.2f}\u00d7" for s in speedups], padding=3, fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over PyTorch (\u00d7)")
    ax.set_title("opsearch vs PyTorch (right of the line: opsearch is faster)", fontsize=10)
    if speedups and max(speedups) / max(min(speedups), 1e-9) > 30:
        ax.set_xscale("log")
    ax.margins(x=0.12)
    fig.tight_layout()
    fig.savefig(path, format="png", bbox_inches="tight")
    plt.close(fig)


# ----------------------------------------------------------------------------- page
_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
.note { color: #666; font-size: 0.9em; } img { max-width: 100%; border: 1px solid #ddd; }
"""


_LEFT = ' class="l"'


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _us(v: float | None) -> str:
    return DASH if v is None else f"{v:,.2f}" if v < 1000 else f"{v:,.0f}"


def _x(v: float | None) -> str:
    return DASH if v is None or math.isnan(v) else f"{v:.2f}\u00d7"


def _num(v, fmt="{:.3f}") -> str:
    return DASH if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _label(w: Workload, width: int = 48) -> str:
    """Operator and shapes on two lines, the shapes shortened to ``width`` characters."""
    short = w.short()
    if len(short) > width:
        short = short[:width - 1] + "\u2026"
    return f"{w.op}\n{short}"


def render(data: ReportData, images: dict[str, str]) -> str:
    """The page's HTML; ``images`` maps ``"curves:<op>"`` and ``"speedup"`` to relative PNG paths."""
    p = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         f"<title>opsearch report: {_e(data.target)}</title><style>{_CSS}</style></head><body>",
         f"<h1>opsearch tuning report</h1><table>"]
    counts = ", ".join(f"{k} {v}" for k, v in data.counts.items())
    status = ", ".join(f"{k} {v}" for k, v in sorted(data.by_status.items())) or DASH
    for k, v in (("target", data.target), ("database", data.url),
                 ("records on this target", data.n_target_records), ("records by status (all targets)", status),
                 ("rows per table", counts), ("other targets", ", ".join(data.other_targets) or DASH),
                 *((("stock MetaSchedule database", data.stock_url),) if data.stock_url else ()),
                 ("generated", data.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))):
        p.append(f"<tr><th class=\"l\">{_e(k)}</th><td class=\"l\">{_e(v)}</td></tr>")
    p.append("</table>")
    if not data.workloads:
        p.append(f"<p><strong>Nothing tuned yet for {_e(data.target)}</strong>: the database has no records "
                 f"or baselines on this target. Run <code>opsearch tune</code> (and <code>opsearch bench</code>), "
                 f"then build the report again.</p></body></html>\n")
        return "\n".join(p)
    p.append(_results_table(data, images))
    p.append("<h2>Tuning curves</h2><p class=\"note\">Best latency measured so far against the number of "
             "trials (every stored record of the workload on this target, in measurement order)."
             + (" Dashed: stock MetaSchedule's records of the workload in the stock database, its own measurements."
                if data.has_stock else "") + "</p>")
    for op in sorted({w.workload.op for w in data.workloads}):
        if f"curves:{op}" in images:
            p.append(f"<h3>{_e(op)}</h3><img src=\"{_e(images['curves:' + op])}\" alt=\"tuning curves of {_e(op)}\">")
        else:
            p.append(f"<h3>{_e(op)}</h3><p class=\"note\">no measured records on this target.</p>")
    p.append(_model_section(data.model))
    p.append("</body></html>\n")
    return "\n".join(p)


def _results_table(data: ReportData, images: dict[str, str]) -> str:
    stock = data.has_stock
    p = ["<h2>opsearch vs baselines</h2>",
         "<p class=\"note\">Latencies in µs. <em>opsearch tuned</em> is what <code>opsearch bench</code> measured, "
         "else (marked *) the search's best record"
         + (", and likewise <em>stock MetaSchedule</em> (marked *: the stock database's best record). <em>Trials to "
            "stock's best</em>: the first trial at which opsearch's best so far reached stock's best record, and in "
            "brackets the trial at which stock found it (each side's own measurements)" if stock else "")
         + ". Speedup = baseline latency / opsearch latency.</p>"]
    cols = ("workload", "records (ok)", "opsearch tuned", "PyTorch", "TVM default", "stock MetaSchedule",
            "speedup vs PyTorch", "speedup vs TVM default", "speedup vs stock MetaSchedule") \
        + (("trials to stock's best",) if stock else ())
    for op in sorted({w.workload.op for w in data.workloads}):
        head = "".join(f"<th{_LEFT if i == 0 else ''}>{_e(c)}</th>" for i, c in enumerate(cols))
        p.append(f"<h3>{_e(op)}</h3><table><tr>{head}</tr>")
        for w in (w for w in data.workloads if w.workload.op == op):
            tuned = _us(w.tuned_us) + ("*" if TUNED not in w.baselines and w.best_us is not None else "")
            stock_cell = _us(w.stock_us) + ("*" if STOCK_MS not in w.baselines and w.stock_us is not None else "")
            cells = (f"{w.n_records} ({w.n_ok})", tuned, _us(w.baselines.get(PYTORCH)),
                     _us(w.baselines.get(TVM_DEFAULT)), stock_cell,
                     _x(w.speedup(PYTORCH)), _x(w.speedup(TVM_DEFAULT)), _x(w.speedup(STOCK_MS)))
            if stock:
                ours, theirs = w.trials_to_stock_best()
                cells += (DASH if theirs is None else f"{ours if ours else 'not in ' + str(len(w.curve))} ({theirs})",)
            p.append(f"<tr><td class=\"l\">{_e(w.workload.short())}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cells)
                     + "</tr>")
        p.append("</table>")
    if "speedup" in images:
        p.append(f"<img src=\"{_e(images['speedup'])}\" alt=\"speedup over PyTorch per workload\">")
    else:
        p.append("<p class=\"note\">No speedup chart: no workload has both a PyTorch baseline and an opsearch "
                 "latency (run <code>opsearch bench</code>).</p>")
    return "\n".join(p)


def _model_section(m: ModelReport) -> str:
    p = [f"<h2>Cost model ({_e(m.kind)})</h2>"]
    if m.stored is None:
        p.append(f"<p>No cost model stored for {_e(m.kind)} targets "
                 "(<code>opsearch model train</code> stores one).</p>")
    else:
        meta = ", ".join(f"{k} {v}" for k, v in sorted(m.stored["metrics"].items())) or DASH
        p.append(f"<p>Newest stored model: format {_e(m.stored['format'])}, trained on {_e(m.stored['n_samples'])} "
                 f"records; stored metrics: {_e(meta)}.</p>")
        if m.stored.get("error"):
            p.append(f"<p class=\"note\">It cannot be evaluated: {_e(m.stored['error'])}</p>")
    rows = []
    if m.held_out:
        rows += [("opsearch XGBoost, leave-one-workload-out", m.held_out["opsearch_xgb"]),
                 ("random ranking", m.held_out["random"])]
    if m.stored_eval:
        rows.append(("stored model on these records (may include its training data)", m.stored_eval))
    if rows:
        p.append("<table><tr><th class=\"l\">model</th><th>pairwise accuracy</th><th>top-1 recall</th>"
                 "<th>top-5 recall</th><th>workloads</th><th>pairs</th></tr>")
        for name, r in rows:
            p.append(f"<tr><td class=\"l\">{_e(name)}</td><td>{_num(r['pairwise_accuracy'])}</td>"
                     f"<td>{_num(r['top1_recall'], '{:.2f}')}</td><td>{_num(r['top5_recall'], '{:.2f}')}</td>"
                     f"<td>{r['groups']}</td><td>{r['pairs']}</td></tr>")
        p.append("</table><p class=\"note\">Pairwise accuracy: fraction of pairs of measured candidates of a "
                 "workload ordered correctly. Top-k recall: fraction of workloads whose fastest candidate is among "
                 "the model's k best.</p>")
    if m.note:
        p.append(f"<p class=\"note\">Accuracy: {_e(m.note)}.</p>")
    return "\n".join(p)


# ----------------------------------------------------------------------------- entry point
def prepare_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` and check it is writable; raises :class:`ReportError` in one line."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".opsearch-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ReportError(f"cannot write the report to {out}: {e.strerror or e}") from None
    return out


def write_report(db, target: str, out_dir: str | os.PathLike, model_eval: bool = True, stock_db=None) -> Path:
    """Write ``out_dir/index.html`` and its PNGs for ``target``; returns the page's path.
    ``stock_db``: a database of stock MetaSchedule's records to compare against (module docstring)."""
    out = prepare_dir(out_dir)
    data = collect(db, target, model_eval, stock_db)
    images: dict[str, str] = {}
    try:
        for op in sorted({w.workload.op for w in data.workloads}):
            mine = [w for w in data.workloads if w.workload.op == op]
            curves = {w.workload.short(): w.curve for w in mine if any(v is not None for v in w.curve)}
            stock = {w.workload.short(): w.stock_curve for w in mine if w.stock_curve}
            if curves or stock:
                name = f"curves_{op}.png"
                plot_tuning_curves(op, curves, out / name, stock)
                images[f"curves:{op}"] = name
        bars = [(_label(w.workload), w.speedup(PYTORCH)) for w in data.workloads if w.speedup(PYTORCH)]
        if bars:
            plot_speedups([b[0] for b in bars], [b[1] for b in bars], out / "speedup.png")
            images["speedup"] = "speedup.png"
        page = out / "index.html"
        page.write_text(render(data, images), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot write the report to {out}: {e.strerror or e}") from None
    return page
