"""Scenario format of hashpivot: schema, loader, shipped scenarios, synthetic fleets."""

from __future__ import annotations

from .loader import load_scenario, parse_yaml, shipped_descriptions, shipped_names, shipped_path
from .schema import MARKET_FACTORS, Scenario
from .synthetic import synthetic, synthetic_data
from .validate import Problem, ScenarioError, validate_data

__all__ = [
    "MARKET_FACTORS",
    "Problem",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_yaml",
    "shipped_descriptions",
    "shipped_names",
    "shipped_path",
    "synthetic",
    "synthetic_data",
    "validate_data",
]
