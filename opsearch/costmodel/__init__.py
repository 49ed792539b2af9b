"""Our cost model: XGBoost pairwise ranking over MetaSchedule per-store and workload features."""

from .xgb import XGBCostModel, evaluate, rank_metrics

__all__ = ["XGBCostModel", "evaluate", "rank_metrics"]
