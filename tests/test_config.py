"""The configuration file: what it accepts, and the one-line errors that stop start-up."""

from __future__ import annotations

import pytest

from backends.config import ConfigError, config_from_environment, load_config, parse_config


def test_minimal_config_fills_family_defaults():
    config = parse_config({"backends": {"openai": {"api_keys": ["k"]}}, "default_backend": "openai"}, "t")
    backend = config.backends["openai"]
    assert backend.type == "openai"
    assert backend.base_url == "https://api.openai.com/v1"
    assert backend.timeouts.first_byte > 60


def test_instance_suffix_names_share_a_family():
    config = parse_config(
        {"backends": {"openai.work": {"api_keys": ["a"]}, "openai.2": {"api_keys": ["b"]}}}, "t"
    )
    assert {b.type for b in config.backends.values()} == {"openai"}


def test_environment_variables_expand(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    config = parse_config({"backends": {"anthropic": {"api_keys": ["${MY_KEY}"]}}}, "t")
    assert config.backends["anthropic"].api_keys == ["sk-from-env"]


def test_unset_environment_variable_names_key_path(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"^t: backends.openai.api_keys\[0\]: environment variable NOPE_KEY"
    ):
        parse_config({"backends": {"openai": {"api_keys": ["${NOPE_KEY}"]}}}, "t")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"backends": {"x": {"type": "nonsense"}}}, r"backends.x.type: unknown backend type 'nonsense'"),
        ({"backends": {"local": {"type": "openai-compatible"}}}, r"base_url is required"),
        ({"backends": {"openai": {"base_url": "api.openai.com"}}}, r"base_url must start with http"),
        (
            {"backends": {"openai": {"api_key": "k"}}},
            r"backends.openai.api_key: Extra inputs are not permitted",
        ),
        (
            {"backends": {}, "default_backend": "openai"},
            r"default_backend 'openai' is not a configured backend",
        ),
        ({"backends": {"openai": {"timeouts": {"idle": -1}}}}, r"backends.openai.timeouts.idle"),
        ([1, 2], r"top level must be a mapping"),
    ],
)
def test_bad_config_gives_one_clear_line(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "llm.yaml")


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "llm.yaml"
    path.write_text("backends: [unclosed")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid YAML"):
        load_config(path)


def test_example_config_is_valid(monkeypatch):
    from pathlib import Path

    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "x")
    config = load_config(Path(__file__).parents[1] / "llm.example.yaml")
    assert config.default_backend == "openai"


def test_environment_config_uses_keys_present(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    config = config_from_environment()
    assert list(config.backends) == ["anthropic"]
    assert config.default_backend == "anthropic"
