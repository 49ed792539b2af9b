"""Our cost model: XGBoost pairwise ranking over MetaSchedule per-store and workload features."""

from .xgb import XGBCostModel, evaluate, leave_one_workload_out, pooled, rank_metrics

__all__ = ["XGBCostModel", "evaluate", "rank_metrics"]
