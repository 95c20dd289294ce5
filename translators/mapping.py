"""Cross-protocol tables that are policy rather than wire fact (docs/wire.md §5.5)."""

from __future__ import annotations

# Reasoning effort -> thinking budget in tokens (Anthropic budget_tokens, Gemini thinkingBudget).
EFFORT_BUDGET: dict[str, int] = {
    "none": 0,
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 32768,
}

# Anthropic thinking needs at least this many budget tokens, and max_tokens above the budget.
ANTHROPIC_MIN_BUDGET = 1024
DEFAULT_MAX_TOKENS = 8192


def effort_for_budget(budget: int) -> str:
    """The smallest effort whose budget covers ``budget`` (0 -> "none")."""
    if budget <= 0:
        return "none"
    for effort, tokens in EFFORT_BUDGET.items():
        if effort != "none" and budget <= tokens:
            return effort
    return "max"
