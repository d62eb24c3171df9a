"""The Agent facade: mount actions, run them directly or through an ActionFlow."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio

from .actions import (
    ActionRegistry,
    FlowRun,
    RegisteredAction,
    announce_stalled,
    resolve_env_state,
    stalled_result,
)
from .config import Config
from .dispatch import ActionDispatcher
from .environments import ExecutionEnvironmentManager, get_manager, subscribe_plugin_observers
from .errors import ActionNotFoundError, ConfigError, ExecutionEnvironmentError, PluginError
from .events import EventCenter
from .execution import Execution, current_request
from .models import (
    ACTION_NAME_PATTERN,
    ActionCall,
    ActionRecord,
    ActionSpec,
    FlowResult,
    Policy,
    construct,
    new_id,
)
from .plugins import PluginManager, get_plugin_manager
from .policy_approval import for_plugins
from .schema import function_schema, schema_validator


def _deprecated(agent: Agent, old: str, new: str) -> None:
    """Warn (once per process) that the caller's caller used ``old``."""
    from .deprecation import warn_deprecated

    warn_deprecated(old, new, enabled=agent.config.show_deprecation_warnings, stacklevel=3)


def _declares_context(target: Any) -> bool:
    """Does this callable take the ``action_context`` parameter the dispatcher fills in?"""
    from .schema import INJECTED_PARAMETERS

    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return any(name in parameters for name in INJECTED_PARAMETERS)


class ActionPackage:
    """A named bundle of functions mounted together by ``agent.use_actions(package)``."""

    def __init__(self, name: str, actions: Iterable[Callable[..., Any]], description: str = ""):
        self.name = name
        self.actions = list(actions)
        self.description = description


class Action:
    """``agent.action``: register, inspect and execute the agent's actions."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def register_action(
        self,
        spec: ActionSpec | Mapping[str, Any],
        target: Any = None,
        *,
        validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        visible: bool = True,
        tags: Iterable[str] | None = None,
    ) -> ActionSpec:
        """Register an action from a spec (any executor kind) and its live target.
        ``tags`` are added to the spec's own (see :meth:`get_action_info`)."""
        if not isinstance(spec, ActionSpec):
            spec = ActionSpec.model_validate(dict(spec))
        if tags is not None:
            spec = spec.model_copy(update={"tags": _with_tags(spec.tags, tags)})
        self._agent.dispatcher.policy.merge(spec.policy)  # a bad policy fails at registration
        for requirement in spec.execution_environments:
            self._agent.redactor.add_from_config(requirement.config)
        injects = callable(target) and _declares_context(target)
        entry = RegisteredAction(spec, validate or schema_validator(spec.input_schema),
                                 target=target, visible=visible, injects_context=injects)
        self._agent.registry.add(entry)
        return spec

    def get_action_info(self, *, tags: Iterable[str] | None = None,
                        include_hidden: bool = False) -> list[dict[str, Any]]:
        """The schemas a planner sees (name, description and ``kwargs``, a JSON schema) of
        every visible action: the agent's functions, MCP tools and the ``enable_*``
        packages. ``tags=[...]`` narrows them to the actions carrying any of those tags
        (``action_func(tags=...)``, ``register_action(..., tags=...)``, a package's own)."""
        wanted = None if tags is None else set(_tag_list(tags))
        return [e.spec.info() for e in self._agent.registry
                if (e.visible or include_hidden)
                and (wanted is None or not wanted.isdisjoint(e.spec.tags))]

    def get_tool_info(self, *, tags: Iterable[str] | None = None,
                      include_hidden: bool = False) -> list[dict[str, Any]]:
        """The same schemas as :meth:`get_action_info`, under the older surface's name."""
        return self.get_action_info(tags=tags, include_hidden=include_hidden)

    async def async_execute_action(self, name: str, kwargs: Mapping[str, Any] | None = None, *,
                                   timeout: float | None = None, purpose: str = "") -> ActionRecord:
        """Run one action now and return its record (never raises for a failed call)."""
        if not isinstance(name, str):
            raise TypeError(f"action name must be a string, got {name!r}")
        # Host-built call: every field is already the right type, so skip validation.
        call = construct(ActionCall, {
            "id": new_id("call_"), "action": name, "purpose": purpose, "todo_suggestion": "",
            "source": "host", "round_index": None,
            "kwargs": dict(kwargs) if isinstance(kwargs, Mapping) else ({} if kwargs is None
                                                                         else kwargs),
            "policy": {} if timeout is None else {"timeout_seconds": timeout},
        })
        token = current_request.set(call.id)
        dispatcher = self._agent.dispatcher
        try:
            record = await dispatcher.dispatch(call)
        finally:
            current_request.reset(token)
            if ("request", call.id) in dispatcher.owners:  # a direct call is its own request
                dispatcher.owners.discard(("request", call.id))
                with anyio.CancelScope(shield=True):
                    await self._agent.manager.async_release_scope(
                        "request", call.id, events=self._agent.events)
        self._agent._last_records = [record]
        return record

    def execute_action(self, name: str, kwargs: Mapping[str, Any] | None = None, *,
                       timeout: float | None = None, purpose: str = "") -> ActionRecord:
        """Synchronous :meth:`async_execute_action`."""
        from ._sync import run_sync

        return run_sync(self._run_one, name, kwargs, timeout, purpose)

    async def _run_one(self, name, kwargs, timeout, purpose) -> ActionRecord:
        return await self.async_execute_action(name, kwargs, timeout=timeout, purpose=purpose)

    async def async_execute_actions(self, calls: Iterable[ActionCall | Mapping[str, Any]], *,
                                    concurrency: int | None = None) -> list[ActionRecord]:
        """Run several calls, at most ``concurrency`` at a time; records in call order."""
        parsed = [c if isinstance(c, ActionCall) else ActionCall.model_validate(dict(c))
                  for c in calls]
        limit = concurrency or self._agent.loop_settings["concurrency"]
        records = await self._agent.dispatcher.dispatch_many(parsed, concurrency=limit)
        self._agent._last_records = records
        return records

    def read_action_artifact(self, artifact_id: str | None = None, *,
                             action_call_id: str | None = None) -> Any:
        """Read back what a call kept: with ``artifact_id``, that artifact as a dict
        (``artifact_id``, ``action_call_id``, ``action``, ``kind``, ``media_type``, ``size``,
        ``truncated``, ``content``), checked against ``action_call_id`` when given; with only
        ``action_call_id``, every artifact of that call (a list). Raises
        :class:`~agently_core.artifacts.ArtifactNotFound` for an unknown or expired id."""
        store = self._agent.dispatcher.artifacts
        if artifact_id is not None:
            return store.get(artifact_id, action_call_id).to_dict()
        if action_call_id is not None:
            return [artifact.to_dict() for artifact in store.for_call(action_call_id)]
        raise TypeError("read_action_artifact() needs artifact_id or action_call_id")

    @staticmethod
    def to_action_results(records: Iterable[Any]) -> list[dict[str, Any]]:
        """The records as a follow-up reply sees them: the digest of an instruction-heavy
        call, the plain result of any other (see
        :func:`agently_core.records.to_action_results`)."""
        from .records import to_action_results

        return to_action_results(records)

    def summarize_records(self, records: Iterable[Any] | None = None, *,
                          validation_command_markers: Iterable[str] = ()) -> dict[str, Any]:
        """The evidence of ``records`` (default: the last request's): statuses, failures,
        the commands attempted and run, the validation runs among them (commands holding
        one of ``validation_command_markers``, such as ``"pytest"``) and the latest one's
        outcome (see :func:`agently_core.records.summarize_records`)."""
        from .records import summarize_records

        fields = {entry.spec.name: entry.spec.meta["instruction"]
                  for entry in self._agent.registry
                  if isinstance(entry.spec.meta.get("instruction"), str)}
        return summarize_records(self._agent._last_records if records is None else records,
                                 validation_command_markers=validation_command_markers,
                                 instruction_fields=fields)

    def execute_actions(self, calls: Iterable[ActionCall | Mapping[str, Any]], *,
                        concurrency: int | None = None) -> list[ActionRecord]:
        from ._sync import run_sync

        return run_sync(self._run_many, list(calls), concurrency)

    async def _run_many(self, calls, concurrency):
        return await self.async_execute_actions(calls, concurrency=concurrency)


class Agent:
    """An agent owns its actions, its policy, its event center and its action loop."""

    def __init__(self, name: str | None = None, *, plugins: PluginManager | None = None,
                 config: Config | Mapping[str, Any] | None = None,
                 policy: Policy | Mapping[str, Any] | None = None,
                 manager: ExecutionEnvironmentManager | None = None) -> None:
        shared = plugins is None and config is None
        if plugins is None:
            if config is None:
                plugins = get_plugin_manager()
            else:
                if not isinstance(config, Config):
                    config = Config.load(overrides=config)
                plugins = PluginManager(config).load()
        self.plugins = plugins.load()
        self.config = self.plugins.config
        self.name = name or "agent"
        self.id = new_id("agent_")
        #: Owner id for session-scoped environments (set it to share them across agents).
        self.session_id: str | None = None
        self.approval = for_plugins(self.plugins)
        #: Seconds the interactive approval handlers wait for an answer.
        self.approval_timeout = self.config.approval_timeout
        #: The host configuration's policy layer, and the agent's own (``policy=`` and
        #: :meth:`set_policy`); the agent's narrows the configuration's.
        self._host_policy = Policy().merge(dict(self.config.policy), grants=False)
        self._agent_layer: dict[str, Any] = {}
        if policy is not None:
            self._agent_layer = _layer(policy)
        base = self._host_policy.merge(self._agent_layer, grants=False)
        self._owns_manager = manager is None and not shared
        if manager is None:
            if shared:
                manager = get_manager()  # its center already has the plugin observers
            else:
                manager = ExecutionEnvironmentManager(self.plugins, approval=self.approval,
                                                      policy=base)
                subscribe_plugin_observers(manager.events, self.plugins)
        #: The execution-environment manager (process-wide unless plugins/config are given).
        #: The agent's own approval handlers and policy apply to the environments it ensures.
        self.manager = manager
        self.redactor = manager.redactor
        #: This agent's events; each is also delivered to the manager's center, where the
        #: plugin observers listen, so they see every agent's events and the manager's own.
        self.events = EventCenter(redactor=self.redactor, parent=manager.events)
        self.registry = ActionRegistry()
        self.dispatcher = ActionDispatcher(self.registry, plugins=self.plugins, events=self.events,
                                           approval=self.approval, policy=base, agent=self,
                                           manager=manager, redactor=self.redactor)
        self.action = Action(self)
        self.loop_settings: dict[str, Any] = {
            "max_rounds": int(self.config.action.get("max_rounds", 5)),
            "concurrency": int(self.config.action.get("concurrency", 8)),
            "planning_protocol": self.config.action.get("planning_protocol", "structured_plan"),
        }
        self._planner: Any = None
        self._env_state: str | Callable[[], Any] | None = None
        self._execution_handler: Callable[..., Any] | None = None
        self._runtime: Any = None
        self._flow: Any = None
        self._input: Any = None
        self._input_pending = False
        self._last_records: list[ActionRecord] = []
        self.last_run: FlowResult | None = None
        #: The execution of the last action loop (open while paused on an approval).
        self.last_execution: Execution | None = None
        self._executions: set[Execution] = set()
        self.closed = False
        self._env: Any = None
        self._env_built = False
        self._env_lock: anyio.Lock | None = None
        if self.config.env_name is not None:  # the ``env`` setting
            from .env import get_env

            self.use_env(get_env(self.config, plugins=self.plugins))

    # -- policy ----------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self.dispatcher.policy

    def set_policy(self, policy: Policy | Mapping[str, Any] | None = None, **fields: Any) -> Agent:
        """Set fields of the agent's own policy layer (a field set again replaces its
        earlier value). The layer only narrows the host configuration's policy, and every
        action package and call narrows it in turn (see :class:`Policy`)."""
        layer = {**self._agent_layer, **_layer(policy), **_layer(fields)}
        merged = self._host_policy.merge(layer, grants=False)  # validates first
        self._agent_layer = layer
        self.dispatcher.set_policy(merged)
        return self

    # -- mounting actions ------------------------------------------------------------
    def action_func(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                    description: str | None = None, approval_required: bool = False,
                    timeout: float | None = None, policy: Mapping[str, Any] | None = None,
                    tags: Iterable[str] = (),
                    execution_environments: Iterable[Any] = ()) -> Any:
        """Register a function as an action; usable bare (``@agent.action_func``) or with
        options (``@agent.action_func(name="add", timeout=2)``). The schema comes from the
        signature and docstring. Mount it for planners with :meth:`use_actions`.
        ``execution_environments`` lists the environments each call needs; the function
        reads them from its ``action_context`` parameter."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self._register_function(func, name=name, description=description,
                                    approval_required=approval_required, timeout=timeout,
                                    policy=policy, tags=tags,
                                    execution_environments=execution_environments)
            return func

        return decorate(fn) if fn is not None else decorate

    def _register_function(self, func: Callable[..., Any], *, visible: bool = False,
                           name: str | None = None, description: str | None = None,
                           approval_required: bool = False, timeout: float | None = None,
                           policy: Mapping[str, Any] | None = None,
                           tags: Iterable[str] = (),
                           execution_environments: Iterable[Any] = ()) -> RegisteredAction:
        if not callable(func):
            raise TypeError(f"actions must be callables, got {func!r}")
        for requirement in execution_environments:  # their secrets are known before any call
            self.redactor.add_from_config(getattr(requirement, "config", None)
                                          or (requirement.get("config") if isinstance(
                                              requirement, Mapping) else None))
        schema = function_schema(func, name=name, description=description)
        if not re.match(ACTION_NAME_PATTERN, schema.name):
            raise ValueError(f"{schema.name!r} is not a valid action name (letters, digits, _ . -; "
                             "starting with a letter or _); pass name=... to action_func")
        spec_policy = dict(policy or {})
        if timeout is not None:
            spec_policy["timeout_seconds"] = timeout
        self.dispatcher.policy.merge(spec_policy)  # a bad policy fails here, at registration
        spec = ActionSpec(name=schema.name, description=schema.description,
                          input_schema=schema.input_schema, kind="function",
                          approval_required=approval_required, policy=spec_policy,
                          tags=_tag_list(tags),
                          execution_environments=list(execution_environments))
        entry = RegisteredAction(spec, schema.validate, target=func, visible=visible,
                                 injects_context=schema.injects_context)
        return self.registry.add(entry)

    def use_actions(self, actions: Any, **options: Any) -> Agent:
        """Mount actions for planners: a function, a list of them, the name of a registered
        action or of an installed action package, an :class:`ActionPackage`, or a
        built-in package of :mod:`agently_core.builtins.actions` (``Python(timeout=5)``)."""
        if isinstance(actions, str):
            self._use_name(actions, options)
        elif isinstance(actions, ActionPackage):
            for func in actions.actions:
                self._register_function(func, visible=True)
        elif isinstance(getattr(actions, "action_package", None), str):
            # a built-in package of agently_core.builtins.actions (the class or with options)
            self.enable(actions.action_package, **{**actions.options, **options})
        elif callable(actions) and not inspect.ismodule(actions):
            # the same function registered before (under whatever name and options) is
            # mounted as it is, never registered a second time without its options
            entries = [e for e in self.registry if e.target is actions]
            for entry in entries:
                entry.visible = True
            if not entries:
                self._register_function(actions, visible=True)
        elif inspect.ismodule(actions):
            exported = getattr(actions, "__all__", None)
            if exported is None:
                raise TypeError(f"module {actions.__name__} has no __all__ naming its actions")
            for attr in exported:
                self.use_actions(getattr(actions, attr))
        elif isinstance(actions, Iterable):
            for item in actions:
                self.use_actions(item, **options)
        else:
            raise TypeError(f"use_actions() cannot mount {actions!r}")
        return self

    def _use_name(self, name: str, options: Mapping[str, Any]) -> None:
        entry = self.registry.get(name)
        if entry is not None:
            entry.visible = True
            return
        packages = self.plugins.registrations("action_package")
        registration = packages.get(name)
        if registration is None:
            known = sorted(set(self.registry.names()) | set(packages))
            raise ActionNotFoundError(
                f"no action or action package named {name!r}; known: {', '.join(known) or 'none'}"
            )
        self._mount_package(registration, options)

    def _mount_package(self, registration: Any, options: Mapping[str, Any]) -> list[str]:
        """Mount an action package; returns the names of the actions it mounted."""
        mounted = registration.load()(self, **options)
        names: list[str] = []
        for item in mounted or ():
            if isinstance(item, str):
                self.registry.require(item).visible = True
                names.append(item)
            else:
                before = {id(e) for e in self.registry}
                self.use_actions(item)
                names += [e.spec.name for e in self.registry if id(e) not in before]
        return names

    # -- built-in capabilities ---------------------------------------------------------
    def enable(self, package: str, *, desc: str | None = None,
               desc_mode: str = "append", tags: Iterable[str] | None = None,
               **options: Any) -> list[str]:
        """Mount an installed action package with options (what ``enable_python`` and the
        other ``enable_*`` helpers do) and return the names of the actions it mounted.

        ``desc`` adjusts their descriptions: appended to the built-in one (``desc_mode=
        "append"``, the default), replacing it (``"override"``), or ignored
        (``"default"``). ``tags`` are added to the tags the package gives its actions."""
        if desc_mode not in {"append", "override", "default"}:
            raise ValueError(f"desc_mode must be 'append', 'override' or 'default', got {desc_mode!r}")
        added = None if tags is None else _tag_list(tags)
        registration = self.plugins.get("action_package", package)
        names = self._mount_package(registration, options)
        for name in names if added else ():
            entry = self.registry.require(name)
            entry.spec = entry.spec.model_copy(update={"tags": _with_tags(entry.spec.tags, added)})
        if desc and desc_mode != "default":
            for name in names:
                entry = self.registry.require(name)
                text = desc if desc_mode == "override" else f"{entry.spec.description}\n{desc}".strip()
                entry.spec = entry.spec.model_copy(update={"description": text})
        return names

    def use_mcp(self, server: Any, **options: Any) -> list[str]:
        """Mount the tools of MCP ``server`` as actions (package ``mcp``, from
        ``agently-core-mcp``): a stdio command, a Streamable HTTP or SSE URL, or an
        ``{"mcpServers": {...}}`` config. Returns the action names it mounted."""
        return self.enable("mcp", server=server, **options)

    def enable_python(self, **options: Any) -> Agent:
        """Mount ``run_python`` (isolated, warm Python; package ``python``)."""
        self.enable("python", **options)
        return self

    def enable_shell(self, **options: Any) -> Agent:
        """Mount ``run_bash`` (isolated Bash with a command allowlist; package ``bash``)."""
        self.enable("bash", **options)
        return self

    def enable_nodejs(self, **options: Any) -> Agent:
        """Mount ``run_nodejs`` (isolated, warm Node.js; package ``nodejs``)."""
        self.enable("nodejs", **options)
        return self

    def enable_sqlite(self, **options: Any) -> Agent:
        """Mount ``query_sqlite`` (read-only unless the host opts in; package ``sqlite``)."""
        self.enable("sqlite", **options)
        return self

    # -- workspace -------------------------------------------------------------------
    @property
    def workspace(self) -> Any:
        """The :class:`~agently_core.workspace.Workspace` set by :meth:`use_workspace`."""
        return self.__dict__.get("_workspace")

    def use_workspace(self, workspace: Any = None, /, *, provider: str | None = None,
                      provider_options: Mapping[str, Any] | None = None,
                      read_only: bool = False, record_events: bool = False) -> Agent:
        """Bind a workspace (:attr:`workspace`). ``workspace`` is one of:

        * a :class:`~agently_core.workspace.Workspace`: a shared instance, used as it is;
        * a backend object (the ``WorkspaceBackend`` protocol): used directly;
        * a root (a directory, or a string such as a connection string): the backend
          ``provider`` makes, a name registered with
          ``agently_core.workspace.register_backend_provider(name, factory)`` or by a plugin
          (default: the ``workspace_backend`` setting, else ``local``), called as
          ``factory(root, **provider_options)``;
        * nothing: ``provider``'s backend without a root (``provider="memory"``).

        ``read_only=True`` opens the backend read-only and refuses every write. With
        ``record_events=True`` every event this agent emits inside a flow execution is
        appended to the workspace, read back with
        ``workspace.query_runtime_events(execution_id)``. Close a workspace made here with
        ``agent.workspace.close()``."""
        workspace = self._bound_workspace(workspace, provider, provider_options, read_only)
        recorder = workspace.record_events(self.events) if record_events else None
        stop = self.__dict__.pop("_workspace_recorder", None)
        if stop is not None:
            stop()
        self.__dict__["_workspace"] = workspace
        if recorder is not None:
            self.__dict__["_workspace_recorder"] = recorder
        return self

    def _bound_workspace(self, workspace: Any, provider: str | None,
                         provider_options: Mapping[str, Any] | None, read_only: bool) -> Any:
        """The Workspace :meth:`use_workspace` binds, its arguments checked."""
        import os

        from .workspace import Workspace, WorkspaceError

        if provider is not None and (not isinstance(provider, str) or not provider):
            raise WorkspaceError(f"provider must be a backend provider name, got {provider!r}")
        if provider_options is not None and not isinstance(provider_options, Mapping):
            raise WorkspaceError("provider_options must be a mapping of the provider's "
                                 f"options, got {type(provider_options).__name__}")
        if isinstance(workspace, Workspace) or not (
                workspace is None or isinstance(workspace, (str, os.PathLike))):
            if provider is not None or provider_options:
                raise WorkspaceError("provider and provider_options choose the backend for a "
                                     "root; this workspace or backend is already made")
            if isinstance(workspace, Workspace):
                if read_only and not workspace.read_only:
                    raise WorkspaceError("read_only=True needs a read-only Workspace here: "
                                         "this shared one is writable")
                return workspace
            return Workspace(workspace, read_only=read_only)
        if provider is None and isinstance(workspace, str) and self._names_a_backend(workspace):
            raise WorkspaceError(f"use_workspace({workspace!r}): a positional string is the "
                                 f"workspace root; to choose the backend {workspace!r}, pass "
                                 f"provider={workspace!r}")
        return Workspace(provider, root=workspace, read_only=read_only, plugins=self.plugins,
                         **dict(provider_options or {}))

    def _names_a_backend(self, text: str) -> bool:
        from .workspace import backend_provider_names

        return (text in backend_provider_names()
                or text in self.plugins.registrations("workspace_backend"))

    def enable_workspace_file_actions(self, *, read: bool = True, write: bool = False,
                                      search: bool = True, **options: Any) -> Agent:
        """Mount ``list_files`` and ``read_file`` (``read``), ``search_files`` (``search``)
        and ``write_file`` (``write``) over the workspace's file root, confined to it
        (package ``workspace_files``, from ``agently-core-workspace-local``). A read-only
        workspace refuses every write. Options: ``root``, ``prefix``, ``max_read_bytes``,
        ``max_write_bytes``, ``approval_required_for_write`` and more (see
        docs/workspace.md)."""
        if self.workspace is None and options.get("root") is None:
            raise ConfigError("no workspace: call agent.use_workspace(...) first, or pass "
                              "root=... (a directory)")
        self.enable("workspace_files", workspace=self.workspace, read=read, write=write,
                    search=search, **options)
        return self

    # -- planning --------------------------------------------------------------------
    def input(self, request: Any) -> Agent:
        """Set the request for the next action loop."""
        self._input = request
        self._input_pending = True
        return self

    def set_action_loop(self, *, max_rounds: int | None = None, concurrency: int | None = None,
                        planning_protocol: str | None = None) -> Agent:
        for key, value in (("max_rounds", max_rounds), ("concurrency", concurrency)):
            if value is not None:
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
                self.loop_settings[key] = value
        if planning_protocol is not None:
            self.loop_settings["planning_protocol"] = planning_protocol
        return self

    def set_planner(self, planner: Any, **options: Any) -> Agent:
        """Use a planner: an object with ``plan(context, request)``, a two-argument
        ``(context, request)`` callable, a list of scripted rounds, or a registered name.

        A planner named here gets the configuration's ``planner_options`` (when the
        ``planner`` setting names the same planner, or none) with ``options`` on top:
        ``agent.set_planner("openai_compatible", model="gpt-4o-mini")``. Every planner
        with a ``bind(agent)`` method is bound to this agent (a model planner registers
        its key with :attr:`redactor` there)."""
        if isinstance(planner, str):
            planner = self._create_planner(planner, options)
        elif isinstance(planner, (list, tuple)):
            planner = self.plugins.create("planner", "scripted", steps=list(planner), **options)
        elif not hasattr(planner, "plan") and callable(planner):
            planner = _HandlerPlanner(planner)
        elif not hasattr(planner, "plan"):
            raise TypeError(f"not a planner: {planner!r}")
        self._bind(planner)
        self._planner = planner
        return self

    def planner_options(self, name: str | None = None) -> dict[str, Any]:
        """The configuration's options for planner ``name`` (default: the configured
        one): ``[planner_options]`` and ``AGENTLY_PLANNER_OPTION_*``, merged. They belong
        to the configured planner; for another one there are none."""
        configured = self.config.planner
        if name is not None and configured is not None and name != configured:
            return {}
        return dict(self.config.planner_options)

    def _create_planner(self, name: str, options: Mapping[str, Any]) -> Any:
        merged = {**self.planner_options(name), **options}
        # a secret-named option (an Authorization header, say) is masked from here on
        self.redactor.add_mapping({k: v for k, v in merged.items() if not k.endswith("_env")})
        try:
            return self.plugins.create("planner", name, **merged)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise ConfigError(f"planner {name!r} does not take an option it was given: {exc} "
                              "(options: [planner_options], AGENTLY_PLANNER_OPTION_*, "
                              "create_agent(config=...), set_planner(..., **options))"
                              ) from None

    def _bind(self, planner: Any) -> None:
        bind = getattr(planner, "bind", None)
        if callable(bind) and not isinstance(planner, _HandlerPlanner):
            bind(self)

    def _get_planner(self) -> Any:
        """The planner in use: the one set, else the configured one (created and bound
        on first use)."""
        if self._planner is None:
            if self.config.planner is None:
                raise ConfigError(
                    "no planner: call agent.set_planner(...) or "
                    "agent.register_action_planning_handler(...), or set planner = \"NAME\""
                )
            planner = self._create_planner(self.config.planner, {})
            self._bind(planner)
            self._planner = planner
        return self._planner

    # -- environment state -------------------------------------------------------------
    @property
    def env_state(self) -> str | Callable[[], Any] | None:
        """What the agent's environment looks like, for planners (see :meth:`set_env_state`)."""
        return self._env_state

    def set_env_state(self, state: str | Callable[[], Any] | None) -> Agent:
        """Describe the agent's environment to planners: a string, or a callable
        (sync or async) returning one, asked before every round. A model planner puts it
        in its system prompt. ``agent.run(..., env_state=...)`` overrides it for one run;
        ``None`` clears it."""
        if state is not None and not isinstance(state, str) and not callable(state):
            raise TypeError(f"env_state must be a string, a callable or None, got {state!r}")
        self._env_state = state
        return self

    async def _current_env_state(self) -> str | None:
        return await resolve_env_state(self._env_state)

    # -- agent environment (Env) -------------------------------------------------------
    @property
    def env(self) -> Any:
        """The :class:`~agently_core.env.Env` attached by :meth:`use_env` or the ``env``
        setting, or None."""
        return self._env

    def use_env(self, env: Any) -> Agent:
        """Attach an :class:`~agently_core.env.Env` (or an env name, made by
        :func:`~agently_core.env.get_env`). The agent builds it before its first planning
        round and mounts its tools, gives its ``get_state()`` to the planner every round
        (as :meth:`set_env_state` would), and cleans it up when it closes."""
        if isinstance(env, (str, Mapping)):
            from .env import get_env

            env = get_env(env, plugins=self.plugins)
        if not all(callable(getattr(env, m, None)) for m in ("get_state", "get_tools")):
            raise TypeError(f"use_env() takes an Env (get_state() and get_tools()), got {env!r}")
        if self._env_built:
            raise ConfigError("this agent's env is already built; an agent has one env: "
                              "attach it with use_env() before the first run")
        self._env = env
        self._env_state = self._read_env_state
        return self

    async def _read_env_state(self) -> str:
        env = await self.async_build_env()  # auto_func asks without a run: build first
        reader = getattr(env, "async_get_state", None)
        return await reader() if callable(reader) else env.get_state()

    async def async_build_env(self) -> Any:
        """Build the attached env and mount its tools, once (a run does it first)."""
        env = self._env
        if env is None or self._env_built:
            return env
        if self._env_lock is None:
            self._env_lock = anyio.Lock()
        async with self._env_lock:  # concurrent runs build it once
            if self._env_built:
                return env
            build = getattr(env, "async_build", None)
            if callable(build):
                await build()
            elif callable(getattr(env, "build", None)):
                env.build()
            self._env_built = True
            for tool in env.get_tools() or ():
                self.use_actions(tool)
        return env

    def build_env(self) -> Any:
        """Synchronous :meth:`async_build_env`."""
        from ._sync import run_sync

        return run_sync(self.async_build_env)

    async def _cleanup_env(self) -> None:
        env, built, self._env_built = self._env, self._env_built, False
        if env is None or not built:
            return
        cleanup = getattr(env, "async_cleanup", None)
        if callable(cleanup):
            await cleanup()
        elif callable(getattr(env, "cleanup", None)):
            env.cleanup()

    # -- model-produced functions ------------------------------------------------------
    def auto_func(self, fn: Callable[..., Any] | None = None, /, *, output: Any = None,
                  ensure_keys: Iterable[str] = (), attempts: int = 3,
                  use_actions: bool | None = None) -> Any:
        """Make a typed function with a docstring into one whose result the planner
        produces (``await planner.generate(context, request)``): usable bare
        (``@agent.auto_func``) or with options. The docstring, its ``{argument}``
        placeholders filled in, is the instruction; the result is validated against the
        return annotation (a type, a pydantic model, or a Schema-as-Prompt dict such as
        ``{"title": (str, "the title", True)}``) or ``output``, with ``ensure_keys``
        (``"resources[*].url"``) required too. An invalid answer is asked again with its
        error, ``attempts`` times in all, then :class:`~agently_core.errors.AutoFuncError`.
        With visible actions (or ``use_actions=True``) the action loop runs first, and
        its history goes to ``generate``. An ``async def`` stays async."""
        import sys

        from .auto_func import make_auto_func

        caller = sys._getframe(1).f_locals  # resolves a local class named as a string

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            return make_auto_func(self, func, output=output, ensure_keys=ensure_keys,
                                  attempts=attempts, use_actions=use_actions,
                                  localns=caller)

        return decorate(fn) if fn is not None else decorate

    def register_action_planning_handler(self, handler: Callable[..., Any] | None) -> Agent:
        """Plan with ``await handler(context, request)`` (an
        :data:`~agently_core.types.plugins.ActionPlanningHandler`: an
        :class:`~agently_core.action_handlers.ActionRunContext` and an
        :class:`~agently_core.action_handlers.ActionPlanningRequest`, answering with the
        round's decision); ``None`` restores the configured planner."""
        self._planner = None if handler is None else _HandlerPlanner(handler)
        return self

    def register_action_execution_handler(self, handler: Callable[..., Any] | None) -> Agent:
        """Execute each round with ``await handler(context, request)`` (an
        :data:`~agently_core.types.plugins.ActionExecutionHandler`): ``request`` is an
        :class:`~agently_core.action_handlers.ActionExecutionRequest` (``action_calls``,
        ``async_call_action``, ``concurrency``, ``timeout``); the handler returns one
        ``ActionResult`` (or record) per call. ``None`` restores the default."""
        if handler is not None and not callable(handler):
            raise TypeError(f"execution handler must be callable, got {handler!r}")
        self._execution_handler = handler
        return self

    def _create(self, role: str, default: str = "agently") -> Any:
        return self.plugins.select_default(role, default).load()()

    def _components(self) -> tuple[Any, Any, Any]:
        if self._runtime is None:
            self._runtime = self._create("action_runtime")
        if self._flow is None:
            self._flow = self._create("action_flow")
        return self._runtime, self._flow, self._get_planner()

    @property
    def runtime(self) -> Any:
        """The ActionRuntime this agent uses (chosen by the ``runtime`` setting)."""
        if self._runtime is None:
            self._runtime = self._create("action_runtime")
        return self._runtime

    def create_execution(self, *, execution_environments: Iterable[Any] = (),
                         runtime_resources: Mapping[str, Any] | None = None,
                         workspace: Any = None, require_distributed_provider: bool = False,
                         lease_ttl: float | None = None, save_rounds: bool = False,
                         execution_id: str | None = None) -> Execution:
        """A flow execution on this agent's manager, events and approval handlers; closed
        with the agent at the latest. With ``workspace`` (a
        :class:`~agently_core.workspace.Workspace`) it is durable: a pause on an approval
        saves it there, and :meth:`load_execution` resumes it in another process.
        ``save_rounds=True`` (needs ``workspace``) also saves the run after every round
        it goes on past and when it ends, holding the execution's lease while it runs, so
        that another process can continue it from the next round if this one dies (see
        ``Execution.async_continue_run``). ``execution_id`` names the execution (default:
        a new id); a run refuses an id saved already (``ExecutionConflict``).
        ``require_distributed_provider=True`` refuses (``CapabilityMissing``) a workspace
        that does not report compare-and-set, leases, range reads, retention, event
        sequences, durability and multi-process safety. ``workspace=False`` (or ``None``,
        the default) binds no workspace, not even :attr:`workspace`."""
        durable: dict[str, Any] = {}
        if lease_ttl is not None:
            durable["lease_ttl"] = lease_ttl
        if execution_id is not None and (not isinstance(execution_id, str)
                                         or not execution_id.strip()):
            raise ValueError(f"execution_id must be a non-empty string, got {execution_id!r}")
        execution = Execution(self.manager, execution_environments=execution_environments,
                              runtime_resources=runtime_resources, events=self.events,
                              approval_context=self, approval=self.approval,
                              policy=self.dispatcher.policy, workspace=workspace,
                              require_distributed_provider=require_distributed_provider,
                              save_rounds=save_rounds, id=execution_id, **durable)
        execution.restore_result = FlowResult.model_validate
        self._executions.add(execution)
        return execution

    async def async_load_execution(self, execution_id: str, *, workspace: Any = None,
                                   execution_environments: Iterable[Any] | None = None,
                                   runtime_resources: Mapping[str, Any] | None = None,
                                   require_distributed_provider: bool = False,
                                   lease_ttl: float | None = None) -> Execution:
        """Load a durable execution saved in ``workspace`` (default: :attr:`workspace`),
        typically by another process, to resume it here with ``await
        execution.async_continue_with(decision, resume_request_id=...)`` or, when it was
        saved mid-run (``save_rounds``; ``execution.saved_round`` is not None), to
        continue its loop from the next round with ``await
        execution.async_continue_run()``.

        Loading claims the execution's lease (``ExecutionBusy`` while another process
        holds it), ensures its execution-scoped environments again and rebuilds the
        paused (or running) flow from its saved state, on this agent's actions, planner and handlers
        (register the same actions first). ``ExecutionNotFound`` for an unknown id. A
        closed execution loads for reading (and repeats of its resume ids). Pass
        ``execution_environments`` again for those whose configuration held secrets, and
        the host's ``runtime_resources``: neither is saved."""
        if workspace is None:
            workspace = self.workspace
        if workspace is None:
            raise ConfigError("no workspace: pass workspace=... or call "
                              "agent.use_workspace(...) first")
        durable: dict[str, Any] = {}
        if lease_ttl is not None:
            durable["lease_ttl"] = lease_ttl
        execution = await Execution.load(
            self.manager, workspace, execution_id,
            execution_environments=execution_environments,
            restore_result=FlowResult.model_validate, runtime_resources=runtime_resources,
            events=self.events, approval_context=self, approval=self.approval,
            policy=self.dispatcher.policy,
            require_distributed_provider=require_distributed_provider, **durable)
        self._executions.add(execution)
        if execution.paused or execution.saved_round is not None:
            try:
                self._rebuild_resume(execution)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close_execution(execution)
                raise
        self.last_execution = execution
        return execution

    def load_execution(self, execution_id: str, **options: Any) -> Execution:
        """Synchronous :meth:`async_load_execution`."""
        from ._sync import run_sync

        return run_sync(self._load_kw, execution_id, options)

    async def _load_kw(self, execution_id: str, options: dict[str, Any]) -> Execution:
        return await self.async_load_execution(execution_id, **options)

    def _rebuild_resume(self, execution: Execution) -> None:
        """Give a loaded, paused execution what resumes it: the start of its environments
        and then the flow, or the flow restored from its exported state; or a loaded
        execution saved mid-run what continues its loop from the next round."""
        from .execution import RUNNING, ExecutionStateError

        state = execution.resume_state or {}
        request = state.get("request")
        saved = state.get("options", {})
        options = {key: saved.get(key, self.loop_settings[key])
                   for key in ("max_rounds", "concurrency", "planning_protocol")}
        if isinstance(saved.get("env_state"), str):
            options["env_state"] = saved["env_state"]
        kind = state.get("kind")
        if kind == "start":
            execution.suspend(execution.pending,
                              self._start_resumer(execution, request, options))
            return
        if kind not in ("flow", RUNNING):
            raise ExecutionStateError(f"execution {execution.id} was saved without the state "
                                      "to resume it in another process")
        runtime, flow, planner = self._components()
        name = getattr(flow, "name", type(flow).__name__)
        method = "resume_from" if kind == "flow" else "continue_from"
        restore = getattr(flow, method, None)
        if state.get("flow") != name:
            raise ExecutionStateError(f"execution {execution.id} was saved by ActionFlow "
                                      f"{state.get('flow')!r}; this agent runs {name!r}")
        if state.get("flow_state") is None or not callable(restore):
            raise ExecutionStateError(
                f"ActionFlow {name!r} cannot export and restore its state (export_state/"
                f"{method}); execution {execution.id} can only go on in the process that "
                "saved it")
        run = self._flow_run(execution, request, options, runtime, planner, flow)
        flow_state = state["flow_state"]
        if kind == RUNNING:
            resumed = self._resumer(execution, lambda _: restore(run, flow_state))
            execution.set_continuation(lambda: resumed(None))
            return
        execution.suspend(execution.pending, self._resumer(
            execution, lambda decision: restore(run, flow_state, decision)))

    def _flow_run(self, execution: Execution, request: Any, options: dict[str, Any],
                  runtime: Any, planner: Any, flow: Any) -> FlowRun:
        """The FlowRun of ``execution``; a pause suspends the execution with what another
        process needs to resume it (for a durable execution)."""

        def pause(requests: Any, resume: Any) -> None:
            state = (self._resume_state("flow", request, options, flow, run)
                     if execution.workspace is not None else None)
            execution.suspend(requests, self._resumer(execution, resume), state=state)

        async def checkpoint(round_index: int, flow_state: Any) -> None:
            from .execution import RUNNING

            state = self._resume_state(RUNNING, request, options, flow, run,
                                       flow_state=flow_state)
            state["round"] = round_index
            await execution.save_checkpoint(state)

        loop = {key: value for key, value in options.items() if key != "env_state"}
        run = FlowRun(
            request=request, agent_name=self.name, runtime=runtime, planner=planner,
            dispatcher=self.dispatcher, execution_handler=self._execution_handler,
            execution=execution, **loop, pause=pause,
            checkpoint=checkpoint if execution.save_rounds else None,
            settings={"env_state": options.get("env_state", self._env_state)},
        )
        return run

    def _resume_state(self, kind: str, request: Any, options: Mapping[str, Any],
                      flow: Any = None, run: Any = None, *,
                      flow_state: Any = None) -> dict[str, Any]:
        """What a new process needs to go on with the run: ``kind`` "start" (paused
        starting its environments), "flow" (paused in the flow: its exported state) or
        "running" (saved after a round: ``flow_state`` as the flow handed it over)."""
        from pydantic_core import to_jsonable_python

        state: dict[str, Any] = {"kind": kind,
                                 "request": to_jsonable_python(request, fallback=repr),
                                 "options": dict(options)}
        if kind != "start":
            export = getattr(flow, "export_state", None)
            state["flow"] = getattr(flow, "name", type(flow).__name__)
            if kind == "flow":
                flow_state = (export(run, redactor=self.redactor) if callable(export)
                              else None)
            state["flow_state"] = flow_state
        return state

    async def _save_paused(self, execution: Execution) -> None:
        """Save a durable execution that just paused (inside a resume, ``async_continue_with``
        saves when the resume ends)."""
        if execution.workspace is not None and execution.paused and not execution.resuming:
            await execution.save()

    async def async_run(self, request: Any = None, *, max_rounds: int | None = None,
                        concurrency: int | None = None, planning_protocol: str | None = None,
                        execution_environments: Iterable[Any] = (),
                        runtime_resources: Mapping[str, Any] | None = None,
                        workspace: Any = None, execution: Execution | None = None,
                        env_state: str | None = None, timeout: float | None = None,
                        save_rounds: bool = False, execution_id: str | None = None
                        ) -> FlowResult:
        """Run the action loop for ``request`` (or the pending :meth:`input`) inside a new
        execution (durable with ``workspace``; see :meth:`create_execution`), or inside
        ``execution``, one of this agent's not yet used. A run that stops on a pending
        approval leaves ``agent.last_execution`` paused: resume it with
        ``async_continue_with(decision, resume_request_id=...)``. ``env_state`` describes the
        environment to the planner for this run (instead of :meth:`set_env_state`'s).
        ``timeout`` bounds the whole loop (starting its environments, every round's
        planning and execution) in seconds: a run still going then is stopped, its
        environments released, and it ends ``failed`` with an ``ActionLoopStalled`` record
        saying where it stalled (see :func:`~agently_core.actions.stalled_result`).
        ``save_rounds=True`` (with ``workspace``) saves the run after every round it goes
        on past, so that another process continues it if this one dies, and
        ``execution_id`` names the new execution (both: see :meth:`create_execution`)."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or not timeout > 0):
            raise ValueError(f"timeout must be a number of seconds above 0, got {timeout!r}")
        if request is None:
            request = self._input
        self._input_pending = False
        if env_state is not None and not isinstance(env_state, str):
            raise TypeError(f"env_state must be a string, got {type(env_state).__name__}")
        options: dict[str, Any] = {
            "max_rounds": max_rounds or self.loop_settings["max_rounds"],
            "concurrency": concurrency or self.loop_settings["concurrency"],
            "planning_protocol": planning_protocol or self.loop_settings["planning_protocol"],
        }
        if env_state is not None:
            options["env_state"] = env_state
        if timeout is not None:
            options["timeout"] = float(timeout)
        if execution is None:
            execution = self.create_execution(execution_environments=execution_environments,
                                              runtime_resources=runtime_resources,
                                              workspace=workspace, save_rounds=save_rounds,
                                              execution_id=execution_id)
        elif execution_environments or runtime_resources or workspace is not None \
                or save_rounds or execution_id is not None:
            raise TypeError("execution_environments, runtime_resources, workspace, "
                            "save_rounds and execution_id are options of a new execution; "
                            "give them to create_execution")
        elif execution not in self._executions or execution.state != "open" or (
                execution.paused or execution.result is not None):
            raise ConfigError(f"execution {execution.id} is not a new, open execution of this "
                              "agent; create one with agent.create_execution(...)")
        self.last_execution = execution
        return await self._run_in(execution, request, options)

    async def _run_in(self, execution: Execution, request: Any, options: dict[str, Any]
                      ) -> FlowResult:
        if execution.save_rounds and not execution._holding:
            try:  # the run holds the lease, saves every round and its end
                return await execution._run_saving(
                    lambda: self._run_in(execution, request, options))
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close_execution(execution)
                raise
        runtime, flow, planner = self._components()
        run = self._flow_run(execution, request, options, runtime, planner, flow)
        request_token = current_request.set(execution.id)
        try:
            with execution.bind(), anyio.move_on_after(run.timeout) as bound:
                if run.timeout is not None:
                    run.deadline = bound.deadline
                try:
                    await self.async_build_env()
                except Exception as exc:
                    result = FlowResult(stop_reason="failed", error=f"the agent's env could "
                                        f"not be built: {type(exc).__name__}: {exc}")
                    return await self._settle(execution, result)
                try:
                    await execution.async_start()
                except (ExecutionEnvironmentError, ConfigError, PluginError) as exc:
                    result = FlowResult(stop_reason="failed", error=f"the execution's "
                                        f"environments could not start: {exc}")
                    return await self._settle(execution, result)
                if execution.paused:  # an execution-scoped environment waits for approval
                    state = (self._resume_state("start", request, options)
                             if execution.workspace is not None else None)
                    execution.suspend(execution.pending,
                                      self._start_resumer(execution, request, options),
                                      state=state)
                    result = FlowResult(stop_reason="approval_required",
                                        error="the execution's environments wait for approval")
                    await self._save_paused(execution)
                    return self._finish_run(execution, result)
                execution.seal()
                result = await flow.run(run)
            run.deadline = None  # a resume later is not bound by this call's time
            if bound.cancelled_caught:  # the whole loop stalled past its time bound
                result = stalled_result(run, run.timeout, request)
                await announce_stalled(self.events, execution.id, result)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close_execution(execution)
            raise
        finally:
            current_request.reset(request_token)
        return await self._settle(execution, result)

    def _start_resumer(self, execution: Execution, request: Any, options: dict[str, Any]):
        """Resume an execution paused while starting: grant, start, then run the loop."""
        start = execution.resume_start

        async def resume(decision: Any) -> FlowResult:
            try:
                await start(decision)
            except (ExecutionEnvironmentError, ConfigError, PluginError) as exc:
                result = FlowResult(stop_reason="failed", error=f"the execution's "
                                    f"environments could not start: {exc}")
                return await self._settle(execution, result)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close_execution(execution)
                raise
            if decision.decision != "approved":
                result = FlowResult(stop_reason="failed",
                                    error="the execution's environments were denied")
                return await self._settle(execution, result)
            if execution.paused:
                execution.suspend(execution.pending, resume)
                return self._finish_run(execution, FlowResult(stop_reason="approval_required"))
            return await self._run_in(execution, request, options)

        return resume

    def _resumer(self, execution: Execution, resume: Any):
        async def resumed(decision: Any) -> FlowResult:
            request_token = current_request.set(execution.id)
            try:
                await self.async_build_env()  # a resume in another process builds it there
                with execution.bind():
                    result = await resume(decision)
            except BaseException:  # a failed or cancelled resume leaves nothing open
                with anyio.CancelScope(shield=True):
                    await self._close_execution(execution)
                raise
            finally:
                current_request.reset(request_token)
            return await self._settle(execution, result)

        return resumed

    async def _settle(self, execution: Execution, result: FlowResult) -> FlowResult:
        """Close the execution unless the run paused on an approval; record the result."""
        result.execution_id = execution.id
        execution.result = result
        if not execution.paused:
            await self._close_execution(execution)
        else:
            await self._save_paused(execution)
        return self._finish_run(execution, result)

    def _finish_run(self, execution: Execution, result: FlowResult) -> FlowResult:
        result.execution_id = execution.id
        if self.redactor.active:  # the request and the plans may carry secrets too
            result = FlowResult.model_validate(self.redactor.redact(result.model_dump(mode="json")))
        else:  # a copy: resuming a paused run must not change what this run returned
            result = result.model_copy(deep=True)
        result._show_deprecation_warnings = self.config.show_deprecation_warnings
        self.last_run = result
        self._last_records = list(result.records)
        return result

    async def _close_execution(self, execution: Execution) -> None:
        self._executions.discard(execution)
        await execution.async_close()  # releases its execution- and request-scoped environments
        if not execution.paused:
            self.dispatcher.owners.difference_update(
                {("execution", execution.id), ("request", execution.id)})

    def run(self, request: Any = None, **options: Any) -> FlowResult:
        """Synchronous :meth:`async_run` (``max_rounds``, ``concurrency``,
        ``planning_protocol``, ``env_state``, ``timeout``, ...)."""
        from ._sync import run_sync

        return run_sync(self._run_kw, request, options)

    async def _run_kw(self, request: Any, options: dict[str, Any]) -> FlowResult:
        return await self.async_run(request, **options)

    async def async_get_action_result(self, **options: Any) -> list[ActionRecord]:
        """Run the pending request's action loop if there is one; return the records of the
        last request. ``timeout=N`` bounds that whole loop (see :meth:`async_run`): a
        stalled one ends with an ``ActionLoopStalled`` record naming where it stalled."""
        if self._input_pending:
            await self.async_run(**options)
        return list(self._last_records)

    @property
    def action_logs(self) -> list[dict[str, Any]]:
        """The last request's structured logs (a direct call or an action loop; see
        :attr:`FlowResult.action_logs <agently_core.models.FlowResult.action_logs>`):
        one JSON entry per call, in call order."""
        return [record.model_dump(mode="json") for record in self._last_records]

    def get_action_result(self, **options: Any) -> list[ActionRecord]:
        """Synchronous :meth:`async_get_action_result`."""
        if self._input_pending:
            self.run(**options)
        return list(self._last_records)

    # -- lifecycle -------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the agent's executions and release its agent-scoped environments."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            for execution in list(self._executions):
                await self._close_execution(execution)
            await self.manager.async_release_scope("agent", self.id, events=self.events)
            owners, self.dispatcher.owners = self.dispatcher.owners, set()
            for scope, owner in sorted(owners):  # every scope the agent's calls started
                await self.manager.async_release_scope(scope, owner, events=self.events)
            try:
                await self._cleanup_env()  # after the sandboxes working in it are released
            finally:
                if self._owns_manager:
                    await self.manager.aclose()

    def close(self) -> None:
        from ._sync import run_sync

        run_sync(self.aclose)

    def add_secrets(self, *values: str) -> Agent:
        """Mask these values wherever they would appear: events, records, digests, logs."""
        self.redactor.add(*values)
        return self

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the older tool surface --------------------------------------------------------
    def tool_func(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        _deprecated(self, "agent.tool_func", "agent.action_func")
        return self.action_func(fn, **options)

    def use_tool(self, tool: Any) -> Agent:
        _deprecated(self, "agent.use_tool", "agent.use_actions")
        return self.use_actions(tool)

    def use_tools(self, tools: Any) -> Agent:
        _deprecated(self, "agent.use_tools", "agent.use_actions")
        return self.use_actions(tools)

    def use_sandbox(self, sandbox: str = "python", **options: Any) -> Agent:
        """Mount a sandboxed code action: ``"python"`` (:meth:`enable_python`),
        ``"bash"`` (:meth:`enable_shell`) or ``"nodejs"`` (:meth:`enable_nodejs`), with
        that helper's options."""
        _deprecated(self, "agent.use_sandbox",
                    "agent.enable_python(...), agent.enable_shell(...) or "
                    "agent.enable_nodejs(...)")
        helpers = {"python": self.enable_python, "bash": self.enable_shell,
                   "nodejs": self.enable_nodejs}
        helper = helpers.get(sandbox) if isinstance(sandbox, str) else None
        if helper is None:
            raise ValueError(f"use_sandbox() mounts one of {', '.join(map(repr, helpers))}, "
                             f"got {sandbox!r}")
        return helper(**options)

    @property
    def tool_logs(self) -> list[dict[str, Any]]:
        """:attr:`action_logs` under the older surface's name (deprecated)."""
        _deprecated(self, "agent.tool_logs", "agent.action_logs")
        return self.action_logs


class _HandlerPlanner:
    """Adapts a ``(context, request)`` planning handler (sync or async) to the Planner
    protocol (it has no ``generate``: ``auto_func`` needs a planner that does)."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        if not callable(handler):
            raise TypeError(f"planning handler must be callable, got {handler!r}")
        self.handler = handler

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        result = self.handler(context, request)
        if inspect.isawaitable(result):
            result = await result
        return result


def create_agent(name: str | None = None, **options: Any) -> Agent:
    """Create an :class:`Agent`. ``options``: ``plugins``, ``config`` (a :class:`Config` or a
    dict of settings that override files and environment, such as ``{"planner":
    "openai_compatible", "planner_options": {"model": "gpt-4o-mini"}}``), ``policy``."""
    return Agent(name, **options)


def _tag_list(tags: Iterable[str]) -> list[str]:
    """``tags`` as a list of non-empty strings (TypeError for a bare string or a
    non-string tag, which would otherwise become letters or be lost)."""
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, got {tags!r}")
    found = list(tags)
    for tag in found:
        if not isinstance(tag, str) or not tag.strip():
            raise TypeError(f"a tag must be a non-empty string, got {tag!r}")
    return found


def _with_tags(current: Iterable[str], added: Iterable[str]) -> list[str]:
    tags = list(current)
    return tags + [tag for tag in _tag_list(added) if tag not in tags]


def _layer(policy: Policy | Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields a policy layer sets, validated (ValueError for a bad one)."""
    if policy is None:
        return {}
    if isinstance(policy, Policy):
        return {key: getattr(policy, key) for key in policy.model_fields_set}
    if not isinstance(policy, Mapping):
        raise ValueError(f"a policy must be a mapping, got {type(policy).__name__}")
    Policy().merge(dict(policy))  # unknown keys and bad values fail here
    return dict(policy)
