"""Opaque page tokens: a small JSON document, base64url without padding. One that does not decode is bad input."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from idlock.errors import InvalidInput

BAD_TOKEN = "page_token is not a token this service issued"


def encode_token(doc: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, sort_keys=True).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """The document a token holds; InvalidInput for anything else."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as e:  # bad base64, bad UTF-8, bad JSON
        raise InvalidInput(BAD_TOKEN) from e
    if not isinstance(doc, dict):
        raise InvalidInput(BAD_TOKEN)
    return doc


__all__ = ["BAD_TOKEN", "decode_token", "encode_token"]
