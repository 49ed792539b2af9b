"""SQLAlchemy 2 tables of the schedule database (tables only; no queries, no TVM).

Every change here ships as an Alembic revision in ``database/versions`` and bumps
:data:`HEAD_REVISION`, which ``connect()`` compares with the database's stamp.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: The Alembic revision this code expects (the newest file in ``database/versions``).
HEAD_REVISION = "0002"
#: Alembic's version table; named for opsearch so a shared PostgreSQL database can host
#: other Alembic-managed applications.
VERSION_TABLE = "opsearch_alembic_version"



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class TargetRow(Base):
    """A compilation target by canonical name (``llvm:znver3``, ``cuda:sm_90``)."""

    __tablename__ = "targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the TVM target dict
    kind: Mapped[str] = mapped_column(String(32))
    arch: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(Text)  # machine that first recorded it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkloadRow(Base):
    """One operator at fixed shapes and attributes; ``key`` is ``Workload.key()``."""

    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    op: Mapped[str] = mapped_column(String(64), index=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)  # Workload.json_args()
    dtype: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(Text, unique=True)
    structural_hash: Mapped[str | None] = mapped_column(String(32), index=True)
    ir_json: Mapped[str | None] = mapped_column(Text)  # tvm.ir.save_json of the IRModule
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunRow(Base):
    """One tuning session: who ran it where and with what settings."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str | None] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opsearch_version: Mapped[str | None] = mapped_column(String(32))
    tvm_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")


class RecordRow(Base):
    """One measured (or failed) schedule candidate: a replayable trace and its timings."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("workload_id", "target_id", "module_hash", name="uq_records_candidate"),
        Index("ix_records_best", "workload_id", "target_id", "status", "mean_us"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    trace: Mapped[list[Any] | None] = mapped_column(JSON)  # MetaSchedule trace JSON
    args_info: Mapped[list[Any] | None] = mapped_column(JSON)  # MetaSchedule ArgInfo JSON
    run_us: Mapped[list[Any]] = mapped_column(JSON, default=list)  # every measured time, µs
    mean_us: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    module_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class CostModelRow(Base):
    """A trained cost model in XGBoost's own format (never a pickle)."""

    __tablename__ = "cost_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_kind: Mapped[str] = mapped_column(String(32), index=True)
    format: Mapped[str] = mapped_column(String(16))  # 'xgboost-json' | 'xgboost-ubj'
    data: Mapped[bytes] = mapped_column(LargeBinary)
    n_samples: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BaselineRow(Base):
    """Latency of a reference implementation (e.g. 'torch-eager') for a workload and target."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("workload_id", "target_id", "implementation", name="uq_baselines"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    implementation: Mapped[str] = mapped_column(String(64))
    latency_us: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PendingRow(Base):
    """A workload someone asked for on a target with no tuned record yet (``opsearch tune --pending``)."""

    __tablename__ = "pending"
    __table_args__ = (UniqueConstraint("workload_id", "target_id", name="uq_pending"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    noted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
