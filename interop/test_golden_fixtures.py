"""The server messages our runtime emits (golden fixtures of the protocol crate) are
accepted by the published client's own pydantic models, and the client fixtures are
exactly what this client version sends."""

import json
from pathlib import Path

import pytest
from runtimeuse_client import (
    AgentRuntimeMessageInterface,
    ArtifactUploadRequestMessageInterface,
    AssistantMessageInterface,
    CommandExecutionResultMessageInterface,
    CommandInterface,
    CommandOutputMessageInterface,
    ErrorMessageInterface,
    ExecuteCommandsOptions,
    HeartbeatMessageInterface,
    QueryOptions,
    ResultMessageInterface,
)

try:
    from runtimeuse_client.client import _build_command_execution, _build_invocation
except ImportError:  # our package (python/, see scripts/test-python.sh) has no such internals
    _build_command_execution = _build_invocation = None

FIXTURES = Path(__file__).resolve().parent.parent / "crates/runtimeuse-protocol/tests/fixtures"

SERVER_MODELS = {
    "server_result_text": ResultMessageInterface,
    "server_result_structured": ResultMessageInterface,
    "server_command_execution_result": CommandExecutionResultMessageInterface,
    "server_error": ErrorMessageInterface,
    "server_assistant": AssistantMessageInterface,
    "server_command_output": CommandOutputMessageInterface,
    "server_heartbeat": HeartbeatMessageInterface,
    "server_artifact_upload_request": ArtifactUploadRequestMessageInterface,
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(SERVER_MODELS))
def test_server_fixture_is_accepted_by_the_pypi_models(name):
    message = load(name)
    AgentRuntimeMessageInterface.model_validate(message)
    parsed = SERVER_MODELS[name].model_validate(message)
    assert parsed.message_type == message["message_type"]


def test_every_server_fixture_is_checked():
    on_disk = {p.stem for p in FIXTURES.glob("server_*.json")}
    assert on_disk - set(SERVER_MODELS) == {"server_end_session_confirm"}


@pytest.mark.pypi_only
def test_client_fixture_matches_what_this_client_version_sends():
    sent = _build_invocation("ECHO:hi", QueryOptions(system_prompt="sys", model="gpt-4.1"))
    assert sent.model_dump(mode="json") == load("client_invocation_minimal")
    sent = _build_command_execution([CommandInterface(command="ls")], ExecuteCommandsOptions())
    assert sent.model_dump(mode="json") == load("client_command_execution_minimal")
