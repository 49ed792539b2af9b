"""Schedule search: MetaSchedule's space and evolutionary search with our builder, runners,
cost model and database (see ``tuner.py``)."""

from .config import TuneConfig, TuneResult
from .tuner import Tuner, tune

__all__ = ["tune", "Tuner", "TuneConfig", "TuneResult"]
