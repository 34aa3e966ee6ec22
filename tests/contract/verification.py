"""The pact files of this run, and provider verification with failures worth reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pact import Verifier

PACT_DIR = Path(__file__).resolve().parents[2] / "pacts"
ORDER_SERVICE = "OrderService"
PRODUCT_SERVICE = "ProductService"


def pact_file(consumer: str, provider: str, descriptions: set[str]) -> Path:
    """The pact the consumer tests wrote in this run, checked to hold exactly `descriptions`.

    Fails (never skips) when it is missing, and names the interactions missing from it, so a
    consumer test that failed cannot pass unnoticed as a smaller pact.
    """
    path = PACT_DIR / f"{consumer}-{provider}.json"
    if not path.is_file():
        pytest.fail(
            f"{path} is missing. The consumer tests write it earlier in the same run: run the whole "
            "tests/contract directory (make contract) and check that the consumer tests passed."
        )
    found = [interaction["description"] for interaction in json.loads(path.read_text())["interactions"]]
    if sorted(found) != sorted(descriptions):
        pytest.fail(
            f"{path.name} does not hold the interactions this provider test verifies.\n"
            f"  missing (did a consumer test fail?): {sorted(descriptions - set(found))}\n"
            f"  not handled by the provider test: {sorted(set(found) - descriptions)}"
        )
    return path


def verify_passes(verifier: Verifier, problems: list[str]) -> None:
    """Verify; on failure show pact's own report (the RuntimeError alone says nothing)."""
    try:
        verifier.verify()
    except RuntimeError:
        pytest.fail(
            "provider verification failed:\n"
            + verifier.output(strip_ansi=True)
            + "".join(f"\n  provider-side problem: {problem}" for problem in problems)
        )
    assert not problems, problems
    assert verifier.results["result"] is True


def verify_fails(verifier: Verifier) -> dict[str, list[str]]:
    """Verify expecting failure; the mismatch texts by the description of each failing interaction."""
    with pytest.raises(RuntimeError, match="Failed to execute verifier"):
        verifier.verify()
    failures: dict[str, list[str]] = {}
    for error in verifier.results["errors"]:
        mismatch = error.get("mismatch", {})
        texts = [str(m.get("mismatch", m)) for m in mismatch.get("mismatches", [])]
        failures[error["interaction"].rsplit(" - ", 1)[-1]] = texts or [str(mismatch)]
    return failures
