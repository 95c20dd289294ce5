"""Loads the suite's YAML configuration (``llm_config``) and owns the router built from it."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from mitmproxy import ctx, exceptions

from backends.availability import Availability
from backends.config import Config, ConfigError, config_from_environment, load_config
from backends.routing import Router
from backends.store import database_path

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "llm.yaml"
# Key-shaped tokens, masked or not, as providers echo them in authentication errors.
KEY_SHAPED = re.compile(rb"\b(?:sk-|AIza)[A-Za-z0-9_\-*.]{4,}")


class Settings:
    """The configuration, the router built from it, the backends' availability state and the
    state database path — shared by the addons that need them."""

    def __init__(self) -> None:
        self.config = Config()
        self.router = Router(self.config)
        self.availability = Availability(self.config.failover)
        self.database_path: Path | None = None
        self._secrets: list[bytes] = []
        self._running = False

    def load(self, loader) -> None:
        loader.add_option(
            "llm_config",
            str,
            "",
            f"""
            YAML configuration file of the LLM suite. Default: {DEFAULT_CONFIG} in the current
            directory when present, otherwise one backend per provider key found in the environment
            (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENROUTER_API_KEY).
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_config" not in updated:
            if "confdir" in updated:
                self._open_state()
            return
        try:
            config, source = self._read(ctx.options.llm_config)
        except ConfigError as e:
            if self._running:
                raise exceptions.OptionsError(f"LLM configuration error: {e}") from None
            # At start-up an error log line stops mitmdump with just this message, no traceback.
            logger.error(f"LLM configuration error: {e}")
            return
        self.config, self.router = config, Router(config)
        self._open_state()
        self._secrets = sorted(
            {k.encode() for b in config.backends.values() for k in b.api_keys if k}, key=len
        )[::-1]
        names = ", ".join(config.backends) or "none"
        logger.info(f"LLM backends from {source}: {names} (default: {config.default_backend or 'none'})")

    def _open_state(self) -> None:
        self.database_path = database_path(self.config.database, ctx.options.confdir)
        self.availability = Availability(self.config.failover, self.database_path)

    def running(self) -> None:
        self._running = True

    def redact_secrets(self, content: bytes) -> bytes:
        """Remove exactly the configured provider keys (cheap enough for every captured chunk)."""
        for secret in self._secrets:
            if secret in content:
                content = content.replace(secret, b"[redacted]")
        return content

    def holds_secret(self, content: bytes) -> bool:
        """Would ``redact_secrets`` change ``content``?"""
        return any(secret in content for secret in self._secrets)

    def redact(self, content: bytes) -> bytes:
        """Remove provider keys and key-shaped tokens (providers echo masked keys in auth errors)."""
        return KEY_SHAPED.sub(b"[redacted]", self.redact_secrets(content))

    @staticmethod
    def _read(option: str) -> tuple[Config, str]:
        if option:
            path = Path(os.path.expanduser(option))
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
            return load_config(path), str(path)
        if Path(DEFAULT_CONFIG).is_file():
            return load_config(Path(DEFAULT_CONFIG)), DEFAULT_CONFIG
        return config_from_environment(), "the environment"
