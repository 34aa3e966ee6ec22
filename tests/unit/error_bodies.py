"""What every 400 body must look like: a human sentence naming the field, details in one documented shape."""

from __future__ import annotations

import re
from typing import Any

PYTHON_WORDS = re.compile(
    r"\b(tuple|list|dict|str|int|float|bool|Decimal|NoneType|None|Any|Union|Optional"
    r"|\w+Request|ProductStatus|OrderFlag|\w+Error|\w+Exception|sys\.\w+|__\w+__)\b"
    r"|invalid value for type|expected \w|\| None|@ body|<class"
)
"""Words and phrases that betray Python internals (type names, cattrs' phrasing, exception classes)."""


def python_leaks(text: str) -> list[str]:
    return [match.group(0) for match in PYTHON_WORDS.finditer(text)]


def leaks_beside_fields(text: str, fields: list[str]) -> list[str]:
    """Python words in `text` once the field names quoted in it (which a client may choose) are taken out."""
    for field in sorted(fields, key=len, reverse=True):
        text = text.replace(field, "<field>")
    return python_leaks(text)


def check_invalid_request(error: Any) -> None:
    """`error`: the `error` object of a 400 body. Raises AssertionError saying what is wrong."""
    assert error["code"] == "invalid_request", error
    message, details = error["message"], error["details"]
    assert isinstance(message, str), error
    assert message.strip(), error
    assert isinstance(details, dict), error
    assert isinstance(details.get("field"), str), error
    assert details["field"], error
    problems = details.get("problems")
    assert isinstance(problems, list), error
    assert problems, error
    for problem in problems:
        assert set(problem) == {"field", "message"}, error
        assert isinstance(problem["field"], str), error
        assert problem["field"], error
        assert isinstance(problem["message"], str), error
        assert not leaks_beside_fields(problem["message"], [problem["field"]]), error
    assert problems[0] == {"field": details["field"], "message": message}, error
    if details["field"] != "body":
        assert details["field"] in message, error
