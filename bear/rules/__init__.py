"""Eligibility rules: the rule model, the batch view, the engine, built-in and file rules."""

from __future__ import annotations

from bear.rules.batch import COLUMNS as BATCH_COLUMNS
from bear.rules.batch import Batch
from bear.rules.model import Rule, SqlRule

__all__ = ["BATCH_COLUMNS", "Batch", "Rule", "SqlRule"]
