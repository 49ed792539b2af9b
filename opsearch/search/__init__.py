"""Schedule search: MetaSchedule's space and evolutionary search with our builder, runners,
cost model and database (see ``tuner.py``)."""

from .tuner import TuneConfig, TuneResult, Tuner, tune

__all__ = ["tune", "Tuner", "TuneConfig", "TuneResult"]
