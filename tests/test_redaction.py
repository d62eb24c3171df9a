"""Issue 3, points 8 and 9: redaction.

The :class:`Redactor` by itself, then the end-to-end promise: a secret planted in an
environment requirement's config, configured by the host, passed in a call's arguments,
returned by an action, raised in an exception or in a provider's error never appears in
any event, record, flow result, execution snapshot or log line.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from agently_core import (
    ActionCall,
    ActionSpec,
    EnvironmentRequirement,
    Redactor,
)
from agently_core.hookspecs import hookimpl
from agently_core.redaction import MASK, is_secret_key
from agently_core.testing import MemoryProvider

# -- Redactor unit tests -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "password", "PASSWORD", "db_password", "passwd", "passphrase", "secret", "client_secret",
    "token", "access_token", "refresh_token", "api_key", "api-key", "apikey", "apiKey",
    "X-Api-Key", "access_key", "Authorization", "auth", "cookie", "Set-Cookie",
    "credentials", "private_key", "session_id", "signature", "bearer",
])
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)
    assert Redactor().redact({key: "value-1"}) == {key: MASK}


@pytest.mark.parametrize("key", ["name", "path", "url", "count", "kind", "id", 1, None])
def test_ordinary_keys_are_kept(key: Any) -> None:
    assert not is_secret_key(key)
    assert Redactor().redact({key: "value-1"}) == {key: "value-1"}


def test_key_names_are_masked_at_any_depth() -> None:
    data = {"outer": {"items": [{"password": "p-1"}, {"user": "bob", "token": 42}],
                      "headers": ({"Authorization": "Basic abc"},)},
            "credentials": {"user": "bob", "pin": "1234"}}
    assert Redactor().redact(data) == {
        "outer": {"items": [{"password": MASK}, {"user": "bob", "token": MASK}],
                  "headers": [{"Authorization": MASK}]},
        "credentials": MASK,  # a whole mapping under a secret key
    }


def test_empty_values_under_secret_keys_stay_visible() -> None:
    assert Redactor().redact({"password": None, "token": ""}) == {"password": None, "token": ""}


def test_values_are_masked_inside_longer_strings_and_urls() -> None:
    redactor = Redactor(["hunter2-secret"])
    assert redactor.text("the password is hunter2-secret.") == f"the password is {MASK}."
    assert redactor.text("https://bob:hunter2-secret@db.example/x?key=hunter2-secret&a=1") == (
        f"https://bob:{MASK}@db.example/x?key={MASK}&a=1")
    assert redactor.text("hunter2-secrethunter2-secret") == MASK * 2
    assert redactor.redact({"note": ["x hunter2-secret y", ("hunter2-secret",)],
                            "n": 3, "ok": True, "none": None}) == {
        "note": [f"x {MASK} y", [MASK]], "n": 3, "ok": True, "none": None}


def test_percent_encoded_forms_are_masked() -> None:
    secret = "p@ss w/rd!42&x=1"
    redactor = Redactor([secret])
    for form in (quote(secret, safe=""), quote_plus(secret), quote(secret, safe="")):
        assert form != secret
        url = f"https://api.example/login?pw={form}&next=%2F"
        assert redactor.text(url) == f"https://api.example/login?pw={MASK}&next=%2F"


def test_longest_secret_wins_when_secrets_overlap() -> None:
    redactor = Redactor(["abcd", "abcd1234efgh"])
    assert redactor.text("x abcd1234efgh y abcd z") == f"x {MASK} y {MASK} z"
    redactor = Redactor(["abcd1234efgh"])
    redactor.add("1234")  # added later, still longest first
    assert redactor.text("abcd1234efgh 1234") == f"{MASK} {MASK}"
    assert "efgh" not in redactor.text("abcd1234efgh")


def test_short_and_non_string_values_are_ignored() -> None:
    redactor = Redactor(["abc", "", "a"])
    redactor.add(None, 12345678, b"bytes-secret", ["list-secret"])
    assert not redactor.active
    assert redactor.text("abc a 12345678") == "abc a 12345678"
    redactor.add("abcd")  # MIN_SECRET_LENGTH
    assert redactor.active and redactor.text("abcd abc") == f"{MASK} abc"


def test_redact_never_mutates_its_input() -> None:
    redactor = Redactor(["s3cr3t-value"])
    data = {"a": ["s3cr3t-value", {"token": "t-1", "b": ("s3cr3t-value", 1)}],
            "password": "pw", "s": "x s3cr3t-value"}
    before = copy.deepcopy(data)
    redacted = redactor.redact(data)
    assert data == before
    assert redacted is not data and redacted["a"] is not data["a"]
    assert "s3cr3t-value" not in json.dumps(redacted)


def test_redactor_is_cheap_and_transparent_when_nothing_matches() -> None:
    redactor = Redactor()
    data = {"a": [1, "two", {"three": 3.0}]}
    assert redactor.redact(data) == data
    assert redactor.text("plain") == "plain"


def test_add_from_config_registers_env_headers_and_secret_keys() -> None:
    redactor = Redactor()
    redactor.add_from_config({
        "env": {"API_TOKEN": "s3cr3t-env-value", "LANG": "C.UTF-8"},
        "headers": {"Authorization": "Bearer s3cr3t-header", "Accept": "application/json"},
        "password": "s3cr3t-config",
        "image": "python:3.12",
        "nested": {"client_secret": "s3cr3t-nested", "region": "eu-west-1"},
        "environment": {"X": "s3cr3t-environment"},
    })
    text = redactor.text("s3cr3t-env-value Bearer s3cr3t-header s3cr3t-config s3cr3t-nested "
                         "s3cr3t-environment C.UTF-8 application/json python:3.12 eu-west-1")
    assert text == f"{MASK} {MASK} {MASK} {MASK} {MASK} " + (
        f"{MASK} {MASK} python:3.12 eu-west-1")  # env and header values are all secrets


def test_add_mapping() -> None:
    redactor = Redactor()
    redactor.add_mapping({"user": "bob-the-user", "auth": {"key": "nested-under-auth"},
                          "api_key": "key-12345"})
    assert redactor.text("bob-the-user nested-under-auth key-12345") == f"bob-the-user {MASK} {MASK}"
    redactor.add_mapping({"A": "all-values-1"}, all_values=True)
    assert redactor.text("all-values-1") == MASK


def test_concurrent_adds_and_redactions() -> None:
    redactor = Redactor()
    secrets = [f"concurrent-secret-{n:04d}" for n in range(200)]
    errors: list[BaseException] = []

    def add(chunk: list[str]) -> None:
        for secret in chunk:
            redactor.add(secret)

    def read() -> None:
        try:
            for _ in range(200):
                redactor.redact({"x": "concurrent-secret-0001 and more"})
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(secrets[i::4],)) for i in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert redactor.text(" ".join(secrets)) == " ".join([MASK] * len(secrets))


# -- logging filter ----------------------------------------------------------------------------
@pytest.fixture
def filtered_log() -> Iterator[tuple[logging.Logger, io.StringIO, Redactor]]:
    redactor = Redactor(["s3cr3t-log-value"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor.logging_filter())
    logger = logging.getLogger("agently_core.tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, redactor
    logger.removeHandler(handler)
    logger.propagate = True


def test_logging_filter_masks_messages_and_arguments(filtered_log) -> None:
    logger, stream, _ = filtered_log
    logger.info("connecting with s3cr3t-log-value")
    logger.info("arg %s and %r", "s3cr3t-log-value", ["x s3cr3t-log-value"])
    logger.info("dict %s", {"password": "pw-123456", "ok": "s3cr3t-log-value"})
    logger.info("number %d", 7)
    out = stream.getvalue()
    assert "s3cr3t-log-value" not in out and "pw-123456" not in out
    assert out.count(MASK) == 5
    assert "number 7" in out


def test_logging_filter_keeps_mapping_arguments_working(filtered_log) -> None:
    logger, stream, _ = filtered_log
    logger.info("user %(user)s key %(key)s", {"user": "bob", "key": "s3cr3t-log-value"})
    assert stream.getvalue() == f"user bob key {MASK}\n"


def test_logging_filter_masks_tracebacks(filtered_log) -> None:
    logger, stream, _ = filtered_log
    try:
        raise ValueError("cannot log in with s3cr3t-log-value")
    except ValueError:
        logger.exception("login failed")
    assert "s3cr3t-log-value" not in stream.getvalue()


def test_logging_filter_masks_key_names_without_value_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor().logging_filter())
    logger = logging.getLogger("agently_core.tests.redaction.keys")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("config %s", {"password": "pw-123456"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert "pw-123456" not in stream.getvalue()


# -- end to end --------------------------------------------------------------------------------
ENV_SECRET = "s3cr3t-env-value"
HEADER_SECRET = "Bearer s3cr3t-header"
CONFIG_SECRET = "s3cr3t-config"
HOST_SECRET = "s3cr3t-host-added"
KWARG_KEY_SECRET = "sk-kwarg-0123456789"
KWARG_VALUE_SECRET = HOST_SECRET
OUTPUT_TOKEN = "tok-output-987654321"
PROVIDER_SECRET = "s3cr3t-provider-pw"
EXECUTION_SECRET = "s3cr3t-execution-db"
SECRETS = [ENV_SECRET, HEADER_SECRET, CONFIG_SECRET, HOST_SECRET, KWARG_KEY_SECRET,
           OUTPUT_TOKEN, PROVIDER_SECRET, EXECUTION_SECRET]


class VaultProvider:
    """Fails to start, with the password in its error message."""

    name = "vault"

    async def ensure(self, requirement: Any) -> Any:
        password = requirement.config["password"]
        raise ConnectionError(f"vault login failed for https://admin:{password}@vault.local "
                              f"(password={quote(password)})")

    async def async_health_check(self, handle: Any) -> bool:
        return True

    async def release(self, requirement: Any, resource: Any) -> None:
        pass


class Everything:
    """A catch-all observer that serialises what it sees."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, event: Any) -> None:
        self.texts.append(event.model_dump_json())


class LeakyObserver:
    """Raises an exception that carries secrets, so the events logger logs it."""

    def __call__(self, event: Any) -> None:
        if event.type == "action.completed":
            raise RuntimeError(f"observer saw {HOST_SECRET} and {ENV_SECRET}")


@pytest.fixture
def build(build_agent: Any, monkeypatch) -> Any:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return functools.partial(build_agent,
                             providers={"memory": MemoryProvider, "vault": VaultProvider})


def secret_agent(build: Any) -> tuple[Any, Everything, Everything]:
    agent = build()
    on_agent, on_manager = Everything(), Everything()
    agent.events.subscribe(LeakyObserver(), name="leaky")
    agent.events.subscribe(on_agent, name="everything")
    agent.manager.events.subscribe(LeakyObserver(), name="leaky")
    agent.manager.events.subscribe(on_manager, name="everything")
    agent.add_secrets(HOST_SECRET)

    def uses_env(action_context=None) -> str:
        assert action_context.execution_environment_resources["box"] is not None
        return (f"env={ENV_SECRET} header='{HEADER_SECRET}' "
                f"url=https://svc:{CONFIG_SECRET}@db.local/?t={quote(ENV_SECRET)}")

    agent.action.register_action(ActionSpec(
        name="uses_env", description="reads its environment",
        execution_environments=[EnvironmentRequirement(
            kind="memory", resource_key="box",
            config={"env": {"API_TOKEN": ENV_SECRET},
                    "headers": {"Authorization": HEADER_SECRET},
                    "password": CONFIG_SECRET})]), target=uses_env, visible=True)
    agent.registry.require("uses_env").injects_context = True
    agent.action.register_action(ActionSpec(
        name="login", execution_environments=[EnvironmentRequirement(
            kind="vault", config={"password": PROVIDER_SECRET})]),
        target=lambda: "never", visible=True)

    @agent.action_func
    def echo(text: str = "", api_key: str = "") -> dict:
        return {"text": text, "token": OUTPUT_TOKEN, "note": f"signed with {HOST_SECRET}",
                "list": [CONFIG_SECRET, {"password": "plain-pw-1"}]}

    @agent.action_func
    def explode(text: str = "") -> None:
        raise ValueError(f"cannot use {text}; host secret {HOST_SECRET}; env {ENV_SECRET}")

    @agent.action_func(approval_required=True)
    def guarded(text: str = "", api_key: str = "") -> str:
        return "guarded ran"

    @agent.action_func(policy={"network": False})
    def offline(text: str = "", api_key: str = "") -> str:
        return "offline ran"

    agent.use_actions(["echo", "explode", "guarded", "offline"])
    return agent, on_agent, on_manager


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret
    assert "s3cr3t" not in text  # no fragment of any planted secret either


def test_secrets_never_leave_through_events_records_results_or_logs(build, caplog) -> None:
    agent, on_agent, on_manager = secret_agent(build)
    records = []
    with caplog.at_level(logging.DEBUG, logger="agently_core"):
        # (a) the environment's config secrets, returned by the action; the config is
        # registered when the environment is ensured
        records.append(agent.action.execute_action("uses_env"))
        # (b) host-configured and (c) call arguments: by key name and by value
        records.append(agent.action.execute_action(
            "echo", {"text": f"value {KWARG_VALUE_SECRET} in {ENV_SECRET}",
                     "api_key": KWARG_KEY_SECRET}))
        # (e) an exception message
        records.append(agent.action.execute_action("explode", {"text": CONFIG_SECRET}))
        # (f) a provider's error message
        records.append(agent.action.execute_action("login"))
        # pending approval and policy-blocked records keep their (redacted) arguments
        agent.approval.set_default("fail_closed")
        records.append(agent.action.execute_action(
            "guarded", {"text": HOST_SECRET, "api_key": KWARG_KEY_SECRET}))
        records.append(agent.action.execute_action(
            "offline", {"text": ENV_SECRET, "api_key": KWARG_KEY_SECRET}))
        # invalid arguments quoting a secret value
        records.append(agent.action.execute_action("echo", {"text": {"v": HOST_SECRET}}))
        # the same through a flow run, in an execution with its own secret environment
        agent.set_planner([[{"action": "uses_env", "kwargs": {}},
                            {"action": "echo", "kwargs": {"text": "plain"}},
                            {"action": "explode", "kwargs": {}}],
                           [{"action": "guarded", "kwargs": {}}]])
        result = agent.run("go", execution_environments=[{
            "kind": "memory", "resource_key": "db",
            "config": {"env": {"DB_PASSWORD": EXECUTION_SECRET}}}])
        assert result.stop_reason == "approval_required"
        paused_json = result.model_dump_json()  # the resume carries on with the same result
        execution = agent.last_execution
        snapshot_paused = execution.snapshot()
        from agently_core.testing import run_async

        resumed = run_async(lambda: execution.async_continue_with(
            "denied", resume_request_id="resume-1", actor="ops"))
        snapshot = execution.snapshot()

    statuses = [r.status for r in records]
    assert statuses == ["success", "success", "failed", "failed", "approval_required",
                        "blocked", "failed"]
    assert resumed.stop_reason == "response"
    assert [r.status for r in resumed.records] == ["success", "success", "failed",
                                                   "approval_required", "blocked"]
    assert snapshot.state == "closed"

    texts = [r.model_dump_json() for r in records]
    texts += [r.model_dump_json() for r in result.records]
    texts += [paused_json, result.model_dump_json(), resumed.model_dump_json(),
              snapshot_paused.model_dump_json(), snapshot.model_dump_json()]
    texts += on_agent.texts + on_manager.texts
    texts += [f"{f.observer} {f.event_type} {f.error}"
              for f in [*agent.events.failures, *agent.manager.events.failures]]
    texts += [r.getMessage() for r in caplog.records]
    texts += [json.dumps(h.model_dump(mode="json")) for h in agent.manager.list()]
    assert_clean("\n".join(texts))

    # the mask shows where the secrets were
    uses_env, echo, explode, login, guarded, offline, invalid = records
    assert uses_env.result.count(MASK) == 4
    assert echo.kwargs == {"text": f"value {MASK} in {MASK}", "api_key": MASK}
    assert echo.result == {"text": f"value {MASK} in {MASK}", "token": MASK,
                           "note": f"signed with {MASK}", "list": [MASK, {"password": MASK}]}
    assert explode.kwargs == {"text": MASK} and explode.error.count(MASK) == 3
    assert login.error_type == "EnvironmentStartError" and MASK in login.error
    assert "ConnectionError" in login.error
    assert guarded.kwargs == {"text": MASK, "api_key": MASK}
    assert guarded.meta["approval_request"]["details"]["kwargs"] == {"text": MASK,
                                                                     "api_key": MASK}
    assert offline.kwargs == {"text": MASK, "api_key": MASK}
    assert invalid.error_type == "ArgumentsError" and MASK in invalid.error
    assert any(MASK in text for text in on_manager.texts)  # the provider's failure event
    assert any("execution_environment.failed" in t and MASK in t for t in on_manager.texts)
    leaky_logs = [r.getMessage() for r in caplog.records if "leaky" in r.getMessage()]
    assert leaky_logs and all(MASK in message for message in leaky_logs)
    assert agent.events.failures and all(MASK in f.error for f in agent.events.failures)


def test_registered_secrets_are_shared_by_agent_and_manager(build) -> None:
    agent = build()
    assert agent.redactor is agent.manager.redactor
    assert agent.events.redactor is agent.redactor
    assert agent.manager.events.redactor is agent.redactor
    assert agent.add_secrets("shared-secret-1") is agent
    assert agent.manager.redactor.text("shared-secret-1") == MASK


def test_declare_registers_config_secrets_at_once(build) -> None:
    agent = build()
    agent.manager.declare({"kind": "memory", "config": {"password": CONFIG_SECRET}})

    @agent.action_func
    def echo(text: str) -> str:
        return text

    record = agent.action.execute_action("echo", {"text": CONFIG_SECRET})
    assert record.kwargs == {"text": MASK} and record.result == MASK


def test_secrets_from_a_failed_environment_start_are_kept(build) -> None:
    agent = build()
    agent.action.register_action(ActionSpec(name="login", execution_environments=[
        EnvironmentRequirement(kind="vault", config={"password": PROVIDER_SECRET})]),
        target=lambda: "never")
    assert agent.action.execute_action("login").status == "failed"

    @agent.action_func
    def echo(text: str) -> str:
        return text

    assert agent.action.execute_action("echo", {"text": PROVIDER_SECRET}).result == MASK


# -- one leak path each -------------------------------------------------------------------------------
def test_environment_config_secrets_are_masked_before_first_ensure(build) -> None:
    agent = build()
    agent.action.register_action(ActionSpec(name="uses_env", execution_environments=[
        EnvironmentRequirement(kind="memory", config={"env": {"API_TOKEN": ENV_SECRET}})]),
        target=lambda: "ok")

    @agent.action_func
    def echo(text: str) -> str:
        return text

    record = agent.action.execute_action("echo", {"text": ENV_SECRET})
    assert ENV_SECRET not in record.model_dump_json()


def test_secrets_used_as_mapping_keys_are_masked(build) -> None:
    agent = build()
    agent.add_secrets(HOST_SECRET)

    @agent.action_func
    def by_key() -> dict:
        return {HOST_SECRET: "value", "ok": 1}

    record = agent.action.execute_action("by_key")
    assert record.status == "success"
    assert HOST_SECRET not in record.model_dump_json()


def test_purpose_is_redacted(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    agent.add_secrets(HOST_SECRET)

    @agent.action_func(approval_required=True)
    def guarded() -> str:
        return "ran"

    record = agent.action.execute_action("guarded", purpose=f"use {HOST_SECRET}")
    assert record.status == "approval_required"
    assert HOST_SECRET not in record.model_dump_json()
    assert HOST_SECRET not in json.dumps(record.meta["approval_request"])


def test_truncation_never_reveals_part_of_a_secret(build) -> None:
    agent = build()
    agent.add_secrets(HOST_SECRET)

    @agent.action_func(policy={"max_output_bytes": 10})
    def chatty() -> str:
        # unredacted, the 10-byte cut would fall inside the secret and keep its prefix
        return "abc " + HOST_SECRET + " " + "x" * 50

    record = agent.action.execute_action("chatty")
    assert record.meta.get("truncated") is True
    assert HOST_SECRET[:6] not in record.model_dump_json()


def test_flow_results_do_not_keep_raw_planned_arguments(build) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    agent.add_secrets(HOST_SECRET)

    @agent.action_func
    def echo(text: str = "", api_key: str = "") -> str:
        return "ok"

    agent.use_actions("echo")
    agent.set_planner([[{"action": "echo", "purpose": f"send {HOST_SECRET}",
                         "kwargs": {"text": HOST_SECRET, "api_key": KWARG_KEY_SECRET}}]])
    result = agent.run("go")
    assert result.records[0].purpose == f"send {MASK}"
    assert [r.kwargs for r in result.records] == [{"text": MASK, "api_key": MASK}]
    text = result.model_dump_json() + agent.last_execution.snapshot().model_dump_json()
    assert HOST_SECRET not in text and KWARG_KEY_SECRET not in text


@pytest.mark.anyio
async def test_records_of_a_denied_resume_are_redacted(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    agent.add_secrets(HOST_SECRET)

    @agent.action_func(approval_required=True)
    def guarded(text: str = "", api_key: str = "") -> str:
        return "ran"

    agent.use_actions("guarded")
    agent.set_planner([{"next_action": "execute", "action_calls": [
        {"action_id": "guarded", "action_input": {"text": HOST_SECRET,
                                                  "api_key": KWARG_KEY_SECRET}}]}])
    await agent.async_run("go")
    result = await agent.last_execution.async_continue_with("denied", resume_request_id="r")
    blocked = [r for r in result.records if r.status == "blocked"]
    assert blocked
    for record in blocked:
        text = record.model_dump_json()
        assert HOST_SECRET not in text and KWARG_KEY_SECRET not in text


def test_values_of_secret_named_arguments_are_masked_everywhere(build) -> None:
    agent = build()

    @agent.action_func
    def typed(api_key: int = 0) -> int:
        return api_key

    @agent.action_func
    def client(api_key: str = "") -> str:
        raise PermissionError(f"invalid API key {api_key}")

    invalid = agent.action.execute_action("typed", {"api_key": KWARG_KEY_SECRET})
    assert invalid.error_type == "ArgumentsError"
    denied = agent.action.execute_action("client", {"api_key": KWARG_KEY_SECRET})
    assert denied.error_type == "PermissionError"
    for record in (invalid, denied):
        assert KWARG_KEY_SECRET not in record.model_dump_json()


def test_bearer_token_alone_is_masked(build) -> None:
    agent = build()
    agent.action.register_action(ActionSpec(name="uses_env", execution_environments=[
        EnvironmentRequirement(kind="memory", config={"headers": {
            "Authorization": HEADER_SECRET}})]),
        target=lambda: f"rejected token {HEADER_SECRET.split()[1]}")
    record = agent.action.execute_action("uses_env")
    assert record.status == "success"
    assert "s3cr3t-header" not in record.model_dump_json()


class PassthroughExecutor:
    """Enforces env_passthrough: hands the child exactly the named host variables (here it
    just returns them, like a sandboxed ``env`` would print them)."""

    kind = "passthrough"
    enforced_policy = frozenset({"env_passthrough"})

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        import os

        return " ".join(f"{name}={os.environ.get(name, '')}"
                        for name in context.policy.env_passthrough or ())


class PassthroughPlugin:
    @hookimpl
    def register_action_executors(self, register: Any) -> None:
        register("passthrough", PassthroughExecutor)


def test_env_passthrough_values_are_masked(build, monkeypatch) -> None:
    monkeypatch.setenv("TEST_FORWARDED_VALUE", "s3cr3t-forwarded")
    agent = build(PassthroughPlugin(), policy={"env_passthrough": ["TEST_FORWARDED_VALUE"]})
    agent.action.register_action(ActionSpec(name="env", kind="passthrough"))
    record = agent.action.execute_action("env")
    assert record.status == "success", record.error
    assert record.result == "TEST_FORWARDED_VALUE=" + MASK


@pytest.mark.anyio
async def test_model_call_records_are_redacted_like_host_ones(build) -> None:
    agent = build()
    agent.add_secrets(HOST_SECRET)

    @agent.action_func
    def echo(text: str = "", api_key: str = "") -> str:
        return f"echo {text}"

    agent.use_actions("echo")
    record = await agent.dispatcher.dispatch(ActionCall(
        action="echo", source="model", kwargs={"text": HOST_SECRET, "api_key": "sk-12345678"}))
    assert record.kwargs == {"text": MASK, "api_key": MASK}
    assert record.result == f"echo {MASK}"


# -- a cut never leaves part of a secret behind -----------------------------------------------
def test_cut_text_masks_a_secret_split_at_the_end() -> None:
    secret = "sk-live-0123456789abcdef"
    redactor = Redactor([secret])
    for size in range(3, len(secret)):
        cut = "output: " + secret[:size]
        assert redactor.cut_text(cut) == "output: ***", size
        assert secret[:3] not in redactor.cut_text(cut)
    # at most the first two characters of a secret survive at the very edge
    assert redactor.cut_text("output: sk") == "output: sk"
    # whole secrets are masked as by text(), and an unrelated ending is kept
    assert redactor.cut_text(f"{secret} and more") == "*** and more"
    assert redactor.cut_text("nothing secret here") == "nothing secret here"
    # the call's own secrets count too
    assert redactor.cut_text("token=abcdefgh12", ["abcdefgh1234"]) == "token=***"


def test_action_context_redacts_before_the_executor_cuts() -> None:
    from agently_core.actions import ActionContext
    from agently_core.models import ActionCall, ActionSpec, Policy

    redactor = Redactor(["hunter2-secret-value"])
    call = ActionCall(action="x", kwargs={"api_key": "callsecret99", "n": 1})
    context = ActionContext(call, ActionSpec(name="x"), Policy(), redactor=redactor)
    assert context.redact("a hunter2-secret-value b callsecret99") == "a *** b ***"
    assert context.redact("ends with hunter2-sec", cut=True) == "ends with ***"
    assert context.redact({"out": "callsecret99"}) == {"out": "***"}
    assert ActionContext(call, ActionSpec(name="x"), Policy()).redact("callsecret99") == \
        "callsecret99"  # no redactor: nothing to mask
