"""`docpipe lambda`'s flags read the environment variable their setting has elsewhere (the
settings model, `docpipe process`): with OPENAI_BASE_URL exported, `docpipe lambda process`
points the discover function at that server, as every other command would.

What the flags hand to the local Lambda is checked where the command builds it, with the
runtime replaced by a recorder that stops there: nothing is started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared import cli
from shared.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]

# flag -> (its variable, the LambdaLocal argument it becomes)
FLAGS = {
    "--database-url": ("DATABASE_URL", "database_url"),
    "--supabase-service-role-key": ("SUPABASE_SERVICE_ROLE_KEY", "supabase_service_role_key"),
    "--openai-api-key": ("OPENAI_API_KEY", "openai_api_key"),
    "--openai-base-url": ("OPENAI_BASE_URL", "openai_base_url"),
    "--textract-endpoint-url": ("TEXTRACT_ENDPOINT_URL", "textract_endpoint_url"),
}


class _Stop(Exception):
    pass


@pytest.fixture
def lambda_local(monkeypatch):
    """Record what `docpipe lambda` would start the local Lambda with; the environment as it was
    afterwards (the command points this process at the local stand-ins)."""
    saved = dict(os.environ)
    for variable, _ in FLAGS.values():
        monkeypatch.delenv(variable, raising=False)
    seen: dict = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr("shared.runtime.lambda_local.LambdaLocal", record)
    get_settings.cache_clear()
    yield seen
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


def _run(tmp_path, *flags) -> None:
    document = tmp_path / "scan.pdf"
    document.write_bytes(b"%PDF-1.7\n")
    with pytest.raises(_Stop):
        cli.main(["lambda", "process", "--template", str(REPO / "template.yaml"), *flags, str(document)])


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_flag_defaults_to_its_variable(flag, lambda_local, monkeypatch, tmp_path):
    variable, argument = FLAGS[flag]
    value = "postgresql://u:p@127.0.0.1:1/db" if variable == "DATABASE_URL" else f"http://127.0.0.1:1/{variable.lower()}"
    monkeypatch.setenv(variable, value)
    _run(tmp_path)
    assert lambda_local[argument] == value


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_the_flag_wins_over_its_variable(flag, lambda_local, monkeypatch, tmp_path):
    variable, argument = FLAGS[flag]
    monkeypatch.setenv(variable, "http://127.0.0.1:1/from-the-environment")
    _run(tmp_path, flag, "http://127.0.0.1:2/from-the-flag")
    assert lambda_local[argument] == "http://127.0.0.1:2/from-the-flag"


def test_without_the_variables_the_local_stand_ins_are_used(lambda_local, tmp_path):
    _run(tmp_path)
    assert all(lambda_local[argument] is None for _, argument in FLAGS.values()), lambda_local


def test_every_flag_named_for_a_setting_is_checked_above():
    """A flag added later whose name is a setting's must default to its variable too."""
    parser = cli._parser()
    lambda_parser = next(a for a in parser._subparsers._group_actions[0].choices["lambda"]._actions
                         if a.dest == "lambda_action").choices["process"]
    named_for_settings = {
        option for action in lambda_parser._actions for option in action.option_strings
        if option.startswith("--") and action.dest in Settings.model_fields
    }
    assert named_for_settings == set(FLAGS)
