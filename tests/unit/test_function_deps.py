"""Every function of template.yaml builds what its stage uses, from exactly the environment the
template resolves for it, in every combination of EncounterProvider x StorageBackend; and
nothing it does not use (the bug that failed every preprocess record with EncounterProvider=openai)."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path

import pytest

from shared.bootstrap import Deps
from shared.errors import MissingSettingError
from shared.runtime import lambda_template
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]

COMBINATIONS = list(itertools.product(["heuristic", "openai"], ["s3", "supabase"], ["none", "storage"]))


@pytest.fixture
def aws(monkeypatch):
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        import boto3

        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/docpipe/database-url", Value="postgresql://u:p@127.0.0.1:1/db", Type="SecureString"
        )
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/docpipe/supabase-service-role-key", Value="service-role-key", Type="SecureString"
        )
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="docpipe/openai-api-key", SecretString="sk-from-secrets-manager"
        )
        from shared import bootstrap

        bootstrap._providers.clear()
        yield
        bootstrap._providers.clear()


def function_settings(environment: dict[str, str], monkeypatch) -> Settings:
    """Settings as the function's process reads them: its environment and nothing else."""
    import os

    for key in list(os.environ):
        if key.lower() in Settings.model_fields:
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize(("provider", "storage", "fhir"), COMBINATIONS)
def test_every_function_builds_what_it_uses_from_its_own_environment(provider, storage, fhir, aws, monkeypatch):
    template = lambda_template.load(
        REPO / "template.yaml",
        {"StorageBucketName": "docpipe", "EncounterProvider": provider, "StorageBackend": storage,
         "SupabaseUrl": "https://project.supabase.co" if storage == "supabase" else "", "FhirOutput": fhir},
    )
    assert set(template.functions) == {
        "PreprocessFunction", "OcrFunction", "DiscoverFunction", "PurgeFunction", "FailuresFunction"}
    for logical_id, spec in template.functions.items():
        stage = stage_of(spec.handler)
        settings = function_settings(spec.environment, monkeypatch)
        # FHIR_OUTPUT=storage: the discover stage stores the file's Bundle too
        uses = stage.USES + (getattr(stage, "FHIR_USES", ()) if settings.fhir_output == "storage" else ())
        assert settings.fhir_output == (fhir if logical_id == "DiscoverFunction" else "none")
        deps = Deps(settings)
        for part in uses:
            assert getattr(deps, part) is not None, (logical_id, part)
        assert set(deps.built()) == set(uses), logical_id  # and nothing else
        if provider == "openai" and "encounters" in uses:
            assert deps.encounters.name == "openai"
        if storage == "supabase" and "storage" in uses:
            assert type(deps.storage).__name__ == "SupabaseStorage"


def stage_of(handler: str):
    """The stage module a template Handler (``handlers.ocr.lambda_handler``) runs: the one its
    handler module calls, ``shared.stages.ocr``, which says what it ``USES``."""
    module = importlib.import_module(handler.rsplit(".", 1)[0])
    stage = importlib.import_module("shared.stages." + module.__name__.rsplit(".", 1)[-1])
    assert stage in vars(module).values(), f"{module.__name__} does not run {stage.__name__}"
    return stage


def test_a_function_without_the_key_cannot_build_the_provider_and_says_which_variable(aws, monkeypatch):
    # The test above can fail: the OCR function's environment has no OpenAI key, so building
    # the provider there (as build_deps did for every part) is an error naming the variable.
    template = lambda_template.load(
        REPO / "template.yaml", {"StorageBucketName": "docpipe", "EncounterProvider": "openai"}
    )
    settings = function_settings(template.functions["OcrFunction"].environment, monkeypatch)
    with pytest.raises(MissingSettingError) as raised:
        Deps(settings).encounters
    assert raised.value.setting == "OPENAI_API_KEY" and "sk-" not in str(raised.value)


def test_the_discover_function_reads_its_key_from_secrets_manager(aws, monkeypatch):
    template = lambda_template.load(
        REPO / "template.yaml", {"StorageBucketName": "docpipe", "EncounterProvider": "openai"}
    )
    env = template.functions["DiscoverFunction"].environment
    assert "OPENAI_API_KEY" not in env and env["OPENAI_API_KEY_SECRET"] == "docpipe/openai-api-key"
    provider = Deps(function_settings(env, monkeypatch)).encounters
    assert provider._client.api_key == "sk-from-secrets-manager"
