"""Ray's token authentication, for a driver that joins a running cluster or talks to its Jobs API.

Clusters started by `ray start` require a token by default (it writes ~/.ray/auth_token), but
Ray's clients send one only with RAY_AUTH_MODE=token, which Ray reads once, when it is
imported: so this runs before anything imports ray. A locally started Ray needs no token."""
from __future__ import annotations

import os
from pathlib import Path


def token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(os.environ.get(
        "RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token")).is_file()


def use_token_if_present(address: str | None) -> None:
    """Send the token when there is one and a cluster will be joined (``address`` given, or
    $RAY_ADDRESS set); call it before importing ray."""
    if (address or os.environ.get("RAY_ADDRESS")) and token_available():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
