"""Hook specifications: the one page a plugin author reads.

A plugin is a plain module (or object) with functions marked ``@agently_core.hookimpl``
whose names match the specs below. It is found through the ``agently_core`` entry-point
group::

    [project.entry-points.agently_core]
    myplugin = "agently_core_myplugin.plugin"

Every hook here is a *registration* hook: it is called once, when the plugin manager
discovers plugins, with a ``register`` callback. Call ``register(name, factory, **options)``
once per thing you provide. ``factory`` is either the object itself (a class or a
callable) or a lazy ``"package.module:attribute"`` string. Prefer the string: it keeps
discovery fast, because nothing behind it is imported until a user selects it.

Names are unique per role across all installed plugins. Two plugins registering the same
name for the same role is reported as a conflict that names both distributions; the
name cannot be used until one of them is blocked. A hook that raises is reported with
the plugin's distribution and the error; the other plugins still load.

The behaviour each factory must produce is described by the protocols in
:mod:`agently_core.protocols`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import argparse

PROJECT_NAME = "agently_core"
ENTRY_POINT_GROUP = "agently_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback every registration hook receives."""

    def __call__(self, name: str, factory: Any, /, **options: Any) -> None: ...


#: What a command's handler returns: the exit code (``None`` means 0).
CommandHandler = Callable[["argparse.Namespace"], "int | None"]


class CommandFactory(Protocol):
    """What :func:`register_commands` registers: called with the command's own
    :class:`argparse.ArgumentParser`, it adds the command's arguments and returns the
    handler that runs it with the parsed arguments."""

    def __call__(self, parser: argparse.ArgumentParser, /) -> CommandHandler: ...


class CommandRegister(Protocol):
    """The callback :func:`register_commands` receives."""

    def __call__(self, name: str, factory: CommandFactory | str, /, *, help: str,
                 description: str = "") -> None: ...


@hookspec
def register_action_runtimes(register: Register) -> None:
    """Register ActionRuntime factories.

    Called once at discovery. ``register(name, factory)``; ``factory()`` returns an object
    that satisfies :class:`agently_core.protocols.ActionRuntime`: it turns a planner's raw
    output (a structured JSON plan or a model's native tool calls) into an
    :class:`~agently_core.models.ActionDecision`. The runtime used by an agent is chosen by
    the ``runtime`` setting (default ``"agently"``, from ``agently-core-runtime``).
    """


@hookspec
def register_action_flows(register: Register) -> None:
    """Register ActionFlow factories.

    Called once at discovery. ``register(name, factory)``; ``factory()`` returns an
    :class:`agently_core.protocols.ActionFlow` that drives rounds of plan -> approval gate
    -> execute until the planner answers, ``max_rounds`` is reached, or a call waits for
    approval. Selected by the ``flow`` setting (default ``"agently"``).
    """


@hookspec
def register_action_executors(register: Register) -> None:
    """Register ActionExecutor factories, one per action kind.

    Called once at discovery. ``register(name, factory, kind=None)``: ``kind`` is the
    :attr:`ActionSpec.kind <agently_core.models.ActionSpec.kind>` the executor runs and
    defaults to ``name``. ``factory()`` returns an
    :class:`agently_core.protocols.ActionExecutor`. When several executors serve one kind,
    the ``[executors]`` setting (or ``AGENTLY_EXECUTOR_<KIND>``) picks one by name.
    """


@hookspec
def register_execution_environment_providers(register: Register) -> None:
    """Register ExecutionEnvironmentProvider factories, one per environment kind.

    Called once at discovery. ``register(name, factory, kind=None)``: ``kind`` is the
    :attr:`EnvironmentRequirement.kind <agently_core.models.EnvironmentRequirement.kind>`
    served and defaults to ``name``. ``factory()`` returns an
    :class:`agently_core.protocols.ExecutionEnvironmentProvider` that starts, health-checks
    and releases live resources. ``[providers]`` (or ``AGENTLY_PROVIDER_<KIND>``) picks one
    when several serve a kind. ``also_serves=("python", ...)`` names further kinds the
    provider serves only when chosen by name (``[providers] python = "docker"``): it is
    never picked for them on its own.
    """


@hookspec
def register_workspace_backends(register: Register) -> None:
    """Register WorkspaceBackend factories.

    Called once at discovery. ``register(name, factory)``; ``factory(**options)`` returns a
    :class:`agently_core.protocols.WorkspaceBackend`. Selected by the ``workspace_backend``
    setting.
    """


@hookspec
def register_action_packages(register: Register) -> None:
    """Register named packages of actions that users mount with ``agent.use_actions("name")``
    or ``agently-core call --enable name``.

    Called once at discovery. ``register(name, factory, description="", actions=())``;
    ``factory(agent, **options)`` mounts its actions on the agent (for example with
    ``agent.action_func``) and returns the names it mounted, or it returns an iterable of
    plain functions which are mounted as function actions. A package that needs options
    raises :class:`~agently_core.errors.ConfigError` naming them; ``actions`` (the names it
    mounts by default) lets ``agently-core call NAME`` say which package and options an
    unmounted action needs (``--option PACKAGE.KEY=VALUE`` passes them).
    """


@hookspec
def register_policy_approval_handlers(register: Register) -> None:
    """Register policy-approval handlers by name.

    Called once at discovery. ``register(name, handler)``; ``handler(context, request)``
    (sync or async; ``context`` is the agent) receives an
    :class:`~agently_core.models.ApprovalRequest` and returns an
    :class:`~agently_core.models.ApprovalDecision`, ``True``/``False``, or one of the strings
    ``"approved"``, ``"denied"``, ``"pending"``. The ``approval_handler`` setting picks the
    default.
    """


@hookspec
def register_planners(register: Register) -> None:
    """Register Planner factories.

    Called once at discovery. ``register(name, factory)``; ``factory(**options)`` returns an
    :class:`agently_core.protocols.Planner`: ``await planner.plan(context, request)`` gives
    the raw decision for one round, in either planning protocol. Model-backed planners are
    published as plugins through this hook (``openai_compatible``, ``openai_responses``,
    ``anthropic_compatible``); register a lazy ``"module:attr"`` string so the SDK behind
    it loads only when the planner is first created.

    ``options`` come from the configuration (``[planner_options]``,
    ``AGENTLY_PLANNER_OPTION_<KEY>``, ``create_agent(config={"planner_options": ...})``)
    under ``agent.set_planner(name, **options)``; reject an unknown one with a
    :class:`~agently_core.errors.ConfigError` naming the planner. A key is never an
    option: read it from the environment variable an option names (``api_key_env``) and
    register it in ``bind(agent)`` with ``agent.redactor.add(key)``, which the agent calls
    after creating the planner. Raise :class:`~agently_core.errors.ModelError` for a failed
    model request. ``generate(context, request)`` (optional, see
    :class:`agently_core.protocols.OutputPlanner`) serves ``@agent.auto_func``. Prove it
    with :class:`agently_core.testing.PlannerConformance`.
    """


@hookspec
def register_envs(register: Register) -> None:
    """Register agent environments (Env) by name.

    Called once at discovery. ``register(name, factory)``; ``factory(**options)`` returns
    an :class:`agently_core.env.Env`: ``get_state()`` (text for every planning round),
    ``get_tools()`` (what ``agent.use_actions`` mounts), ``build()``/``cleanup()`` and
    their async forms. The ``env`` setting (``[env] name = "NAME"``, ``AGENTLY_ENV_NAME``)
    picks one with :func:`agently_core.env.get_env`; its other ``[env]`` keys are the
    options. Raise ``TypeError`` for an unknown option. The core registers ``base``.
    """


@hookspec
def register_event_observers(register: Register) -> None:
    """Register event observers.

    Called once at discovery. ``register(name, observer, events=("*",), setting=None)``;
    ``observer(event)`` (sync or async) receives every :class:`~agently_core.models.Event`
    whose type matches one of the ``events`` patterns (``fnmatch`` style, such as
    ``"action.*"``). With ``setting="NAME"`` the observer is subscribed only where that
    boolean setting is on (``otel``: ``otel = true``, ``AGENTLY_OTEL=1``), so an installed
    but disabled observer costs nothing. An observer that raises is isolated and reported;
    it never breaks the code that emitted the event.
    """


@hookspec
def register_diagnostics(register: Register) -> None:
    """Register checks that ``agently-core doctor`` runs.

    Called once at discovery. ``register(name, check)``; ``check()`` returns a list of
    dicts ``{"name", "ok", "detail", "fix"}``: what was checked, whether it works here,
    what was found, and how to fix it when it does not (for example which isolation tiers
    work on this machine). Keep checks quick and free of side effects on the host.
    """


@hookspec
def register_commands(register: CommandRegister) -> None:
    """Register ``agently-core`` subcommands (``agently-core serve-mcp`` comes from
    agently-core-mcp this way).

    Called once at discovery. ``register(name, factory, help="...", description="")``:
    ``name`` is lowercase words joined by ``-``; ``help`` is the line ``agently-core
    --help`` shows. Each time the command line is built, ``factory(parser)`` (a
    :class:`CommandFactory`; prefer a lazy ``"module:attr"`` string to a module that imports
    only :mod:`argparse`) adds the command's arguments to its own
    :class:`argparse.ArgumentParser`, each with ``help=``, and returns the handler;
    ``handler(args)`` runs the command and returns its exit code. Import what the command
    needs inside the handler, and use :func:`agently_core.cli.open_agent` for an agent with
    the ``--enable``d packages mounted. Raise :class:`~agently_core.cli.UsageError` or
    :class:`~agently_core.errors.ConfigError` for a bad command line (exit 2) and another
    :class:`~agently_core.errors.AgentlyError` for a failure (exit 1). A factory that cannot
    be loaded or raises, and a name taken by a built-in command or by another plugin, leave
    the command out and are reported by ``agently-core plugins`` (exit 1) and ``doctor``;
    the other commands still work.
    """
