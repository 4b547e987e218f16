"""Tools of ``realtime_openai.yaml``: direct functions (their schema comes from the signature and
the docstring), the same declarations a cascaded ``llm`` brain takes."""

from __future__ import annotations

from typing import Any


async def lookup_account(params: Any, account_number: str) -> dict[str, Any]:
    """Look up a customer's account.

    Args:
        account_number: The seven-digit account number the caller gives.
    """
    return {"account_number": account_number, "balance_usd": 42.17, "due": "2027-01-15"}
