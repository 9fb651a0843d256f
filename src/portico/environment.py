"""The environment Portico's children start with: the least that works, and never its secrets."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping


def inherited(names: Iterable[str]) -> dict[str, str]:
    """PATH and the allow-listed names from Portico's own environment."""
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    env.update((k, os.environ[k]) for k in names if k in os.environ)
    return env


def without_secrets(env: Mapping[str, str], token: str) -> dict[str, str]:
    """No PORTICO_* variable, and no value holding the token."""
    return {k: v for k, v in env.items() if not k.startswith("PORTICO_") and not (token and token in v)}
