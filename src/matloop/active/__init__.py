"""Active learning: explore with a committee → select uncertain, diverse snapshots → label →
retrain → stop; all state in one ASE database so runs resume after a crash."""

from __future__ import annotations

from matloop.active.config import ActiveLearningConfig, load_config, template

__all__ = ["ActiveLearningConfig", "load_config", "run_active_learning", "template"]


def run_active_learning(*args, **kwargs):
    """See :func:`matloop.active.loop.run_active_learning`."""
    from matloop.active.loop import run_active_learning as _run

    return _run(*args, **kwargs)
