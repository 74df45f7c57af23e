"""MODELS_FILE: a JSON file that replaces the built-in model table, or a start-up refusal that names it."""

from __future__ import annotations

import json

import pytest

from app import create_app
from app.config import ConfigError

TABLE = [
    {"id": "house-small", "provider": "local", "upstream": "SmolLM2-135M-Instruct"},
    {
        "id": "house-large",
        "provider": "openai",
        "upstream": "gpt-4o",
        "price_in_per_mtok": 2.5,
        "price_out_per_mtok": 10,
    },
    {"id": "house-claude", "provider": "anthropic", "upstream": "claude-haiku-4-5"},
]


def write(tmp_path, content) -> str:
    path = tmp_path / "models.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("shape", ["list", "object"])
def test_the_file_replaces_the_table(make_app, tmp_path, shape):
    content = TABLE if shape == "list" else {"models": TABLE}
    client = make_app(MODELS_FILE=write(tmp_path, content), OPENAI_API_KEY="sk-test-not-used").test_client()
    models = client.get("/api/v1/models").get_json()["models"]
    # Only its models, and of those only the ones whose provider is configured (no ANTHROPIC_API_KEY here).
    assert [row["id"] for row in models] == ["house-small", "house-large"]
    large = next(row for row in models if row["id"] == "house-large")
    assert (large["provider"], large["price_in_per_mtok"], large["price_out_per_mtok"]) == ("openai", 2.5, 10.0)
    assert sum(row["default"] for row in models) == 1


def test_a_model_of_the_built_in_table_is_refused_when_the_file_leaves_it_out(make_app, tmp_path, anon_headers):
    client = make_app(MODELS_FILE=write(tmp_path, TABLE[:1])).test_client()
    assert [row["id"] for row in client.get("/api/v1/models").get_json()["models"]] == ["house-small"]
    response = client.post("/api/v1/stream", json={"message": "hi", "model": "local-smollm2"}, headers=anon_headers)
    assert response.status_code == 422, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([{"provider": "local"}]),  # no id
        json.dumps([{"id": "x", "provider": "mainframe"}]),  # a provider Relay does not have
        json.dumps([{"id": "x", "provider": "local", "price_in_per_mtok": "cheap"}]),
        json.dumps("just a string"),
        json.dumps([{"id": "x", "provider": "openai"}]),  # no model whose provider is configured
    ],
    ids=["not-json", "no-id", "unknown-provider", "bad-price", "not-a-table", "nothing-available"],
)
def test_a_bad_file_is_refused_at_start_up_naming_the_setting(base_env, monkeypatch, tmp_path, content):
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"^MODELS_FILE"):
        create_app({"MODELS_FILE": write(tmp_path, content)})


def test_a_missing_file_is_refused_at_start_up_naming_the_setting(base_env, monkeypatch, tmp_path):
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"^MODELS_FILE"):
        create_app({"MODELS_FILE": str(tmp_path / "absent.json")})
