"""Where secrets come from: environment variables or files (e.g. systemd credentials).

The config names them; their values never appear in a message, only the variable or file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.base import Credentials


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a credential lives: an environment variable or a file (e.g. a systemd credential)."""

    username_env: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    username_file: str | None = None
    password_file: str | None = None
    token_file: str | None = None


class ApiToken(_Strict):
    """A named write-API token; the name is the actor in the audit trail."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    token_env: str | None = None
    token_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ApiToken:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env and token_file")
        return self


def read_secret(env: str | None, file: str | None, *, required: bool = True) -> str | None:
    if env:
        value = os.environ.get(env)
        if value:
            return value
        if required and not file:
            raise ValueError(f"environment variable {env} is not set")
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {file}: {exc.strerror}") from None
    return None


def credentials_from(ref: SecretRef | None) -> Credentials | None:
    if ref is None:
        return None
    token = read_secret(ref.token_env, ref.token_file) if ref.token_env or ref.token_file else None
    if token:
        return Credentials.model_validate({"token": token})
    return Credentials.model_validate(
        {
            "username": read_secret(ref.username_env, ref.username_file),
            "password": read_secret(ref.password_env, ref.password_file),
        }
    )


def named_tokens(single: str | None, named: Sequence[ApiToken]) -> dict[str, str]:
    """Name -> token; `single` (the one-token form) is "default". ValueError when one cannot
    be read or two names share a token (whose act?)."""
    tokens = {}
    if single:
        tokens["default"] = single
    for entry in named:
        if entry.name in tokens:
            raise ValueError(f"api_tokens: name {entry.name!r} used twice")
        token = read_secret(entry.token_env, entry.token_file)
        if not token:
            raise ValueError(f"api_tokens: {entry.name!r} has an empty token")
        if token in tokens.values():
            raise ValueError(f"api_tokens: {entry.name!r} has the same token as another")
        tokens[entry.name] = token
    return tokens
