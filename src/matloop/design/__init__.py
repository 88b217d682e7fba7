"""Composition → property models (with uncertainty), validation splits/metrics, and Bayesian
optimisation of compositions (BoTorch)."""

from __future__ import annotations

from matloop.design.objectives import Objective, pareto_mask, parse_objective
from matloop.design.space import Space, load_space, unit_box_problem

__all__ = ["Objective", "Space", "load_space", "parse_objective", "pareto_mask", "unit_box_problem"]
