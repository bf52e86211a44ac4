"""How much validation work a run does: the defaults of ``optimize``'s validation keywords
(and of the CLI's flags), without importing the solver."""

from __future__ import annotations

from dataclasses import dataclass

#: Default SAA replications (independent scenario sets solved; the best is kept).
REPLICATIONS = 2
#: Default Mak–Morton–Wood batches: two rounds of two on a 2-core machine (a fifth would
#: take a third round).
BATCHES = 4
#: I.i.d. scenarios per batch (its CVaR and chance constraint; E[W] is taken on further paths).
#: On demo (5 batches, β = 0.05·objective, E[W] on 4,000 paths a batch): upper bound 0.49% of
#: the objective at 64 (~15 s a solve), 1.33% at 48, 1.06% at 32 with 8 batches.
BATCH_SCENARIOS = 64
#: Risk δ that the optimum breaches more than q of a batch's N scenarios (γ = q/N).
BATCH_FEASIBILITY_RISK = 0.05
#: Default calibration rounds after round 0 (the first tries in-sample confidence 1).
CALIBRATION_ROUNDS = 3
#: I.i.d. scenarios solved alone for the wait-and-see value.
WS_SCENARIOS = 12


@dataclass
class Settings:
    """How much validation work a run does (``optimize``'s keywords)."""

    replications: int = REPLICATIONS
    batches: int = BATCHES
    batch_scenarios: int = BATCH_SCENARIOS
    calibration_rounds: int = CALIBRATION_ROUNDS
    ws_scenarios: int = WS_SCENARIOS
    validate: bool = True
    selection_paths: int = 0
