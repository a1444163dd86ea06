"""Encounter providers (Pass 0.5): implementations of ``shared.ports.EncounterProvider``."""

from shared.encounters.heuristic import HeuristicEncounters

__all__ = ["HeuristicEncounters"]
