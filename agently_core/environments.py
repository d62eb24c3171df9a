"""The ExecutionEnvironmentManager: ref-counted, scoped, health-checked live resources.

Every :meth:`~ExecutionEnvironmentManager.async_ensure` returns a handle carrying its own
``lease_id``; releasing that lease is the one matching release (releasing it twice is a
no-op). Resources are kept in *slots*, one per reuse key. A slot's lock serialises start,
health check and close, so concurrent ensures of one key start exactly one resource, and a
release can never race a reuse. The provider's ``release`` runs exactly once per resource,
shielded from cancellation, when the last reference goes.

Scopes other than ``action_call`` pin their resource to its owner: the first ensure also
takes an *owner reference*, dropped by the owner's lifecycle (``release_scope``, an
execution closing, an agent closing, the manager shutting down). ``action_call``
resources live exactly as long as the call's own references.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .errors import (
    ConfigError,
    EnvironmentApprovalRequired,
    EnvironmentBlocked,
    EnvironmentNotFound,
    EnvironmentStartError,
    ManagerClosedError,
    PluginError,
)
from .events import EventCenter
from .models import (
    ApprovalRequest,
    EnvironmentHandle,
    EnvironmentRequirement,
    Policy,
    construct,
)
from .protocols import ProviderHandle
from .redaction import Redactor

if TYPE_CHECKING:
    from .plugins import PluginManager
    from .policy_approval import PolicyApproval

SCOPES = ("action_call", "request", "execution", "session", "agent", "global")
_OWNED = frozenset(SCOPES) - {"action_call", "global"}
_SOURCE = "execution_environment"
_lease_numbers = itertools.count(1)
#: How many requirement objects a manager remembers the reuse key (and secrets) of.
_KNOWN_SIZE = 1024


class _Slot:
    """One live resource and the references to it."""

    __slots__ = ("checked", "closed", "created_at", "handle_id", "key", "leases", "lock", "loop",
                 "owner_lease", "provider", "provider_name", "requirement", "resource", "status",
                 "template")

    def __init__(self, key: str, requirement: EnvironmentRequirement, provider: Any,
                 provider_name: str) -> None:
        self.key = key
        self.requirement = requirement
        self.provider = provider
        self.provider_name = provider_name
        self.handle_id = f"envh_{next(_lease_numbers)}_{time.time_ns():x}"
        self.resource: Any = None
        #: What the provider's health check receives for the current resource (made once
        #: per start: a reuse creates nothing).
        self.checked: ProviderHandle | None = None
        self.status = "pending"
        self.closed = False
        self.leases: set[str] = set()
        self.owner_lease: str | None = None
        self.lock = anyio.Lock(fast_acquire=True)  # no scheduling round trip when free
        self.template: dict[str, Any] | None = None
        self.created_at = time.time()
        #: The asyncio loop the resource was started on (its pipes and tasks live there).
        self.loop: Any = None

    def handle(self, lease_id: str | None = None) -> EnvironmentHandle:
        """A snapshot of the slot as a handle (built from a cached template of its fields:
        this is the hot path of every ensure)."""
        template = self.template
        if template is None or template["status"] != self.status:
            req = self.requirement
            template = self.template = {
                "id": self.handle_id, "requirement_id": req.id, "kind": req.kind,
                "scope": req.scope, "owner_id": req.owner_id, "resource_key": req.resource_key,
                "reuse_key": self.key, "provider": self.provider_name, "status": self.status,
                "ref_count": 0, "created_at": self.created_at, "meta": None, "lease_id": None,
            }
        fields = template.copy()
        fields["lease_id"] = lease_id
        fields["ref_count"] = len(self.leases)
        fields["meta"] = {}
        return construct(EnvironmentHandle, fields)


class ExecutionEnvironmentManager:
    """Declares, ensures, reuses, health-checks and releases execution environments.

    One manager serves a process by default (:func:`get_manager`); tests and embedding
    hosts create their own. Use it as a context manager (``async with`` or ``with``) to
    release every resource, the global scope included, when it closes.
    """

    def __init__(
        self,
        plugins: PluginManager | None = None,
        *,
        providers: Mapping[str, Any] | None = None,
        events: EventCenter | None = None,
        approval: PolicyApproval | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._plugins = plugins
        self._providers: dict[str, tuple[Any, str]] = {
            kind: (_checked_provider(provider, kind), getattr(provider, "name",
                                                              type(provider).__name__))
            for kind, provider in (providers or {}).items()
        }
        self.redactor = redactor or Redactor()
        self.events = events or EventCenter(redactor=self.redactor)
        self._approval = approval
        self.policy = policy if isinstance(policy, Policy) else Policy().merge(dict(policy or {}))
        self._declared: dict[str, EnvironmentRequirement] = {}
        self._keys: dict[str, str] = {}
        self._slots: dict[str, _Slot] = {}
        self._by_handle: dict[str, _Slot] = {}
        self._by_lease: dict[str, _Slot] = {}
        #: id(requirement) -> (requirement, a snapshot of its fields, its reuse key): the
        #: requirement objects seen before, whose secrets are registered and key computed
        #: (see :meth:`_resolve_key`).
        self._known: dict[int, tuple[EnvironmentRequirement, tuple[Any, ...], str]] = {}
        self._approved: set[str] = set()
        #: Host event loops with resources on them -> the task that releases those when
        #: the loop ends (see :meth:`_keep_loop`).
        self._keepers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.closed = False

    # -- configuration ---------------------------------------------------------------
    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            from .plugins import get_plugin_manager

            self._plugins = get_plugin_manager()
        return self._plugins

    @property
    def approval(self) -> PolicyApproval:
        if self._approval is None:
            from .policy_approval import for_plugins

            self._approval = for_plugins(self.plugins)
        return self._approval

    def provider_for(self, kind: str, name: str | None = None) -> tuple[Any, str]:
        """The provider instance for ``kind`` (configuration picks one when several are
        installed); created once per manager."""
        cache_key = kind if name is None else f"{kind}@{name}"
        found = self._providers.get(cache_key)
        if found is None:
            registration = self.plugins.select("environment_provider", name, kind=kind)
            provider = _checked_provider(registration.load()(), kind, registration)
            use_config = getattr(provider, "use_config", None)
            if callable(use_config):  # a provider with settings of its own ([ray])
                use_config(self.plugins.config)
            found = self._providers[cache_key] = (provider, registration.name)
        return found

    # -- declare -----------------------------------------------------------------------
    def declare(self, requirement: EnvironmentRequirement | Mapping[str, Any]) -> EnvironmentRequirement:
        """Validate and record a requirement; nothing starts until it is ensured."""
        self._check_open()
        requirement = _as_requirement(requirement)
        self.provider_for(requirement.kind, requirement.provider)  # unknown kind fails now
        self.redactor.add_from_config(requirement.config)
        self._keys[requirement.id] = self._key(requirement)
        self._declared[requirement.id] = requirement
        self.events.emit_sync("execution_environment.declared", _SOURCE,
                              requirement_id=requirement.id, kind=requirement.kind,
                              scope=requirement.scope, owner_id=requirement.owner_id)
        return requirement

    def declared(self) -> list[EnvironmentRequirement]:
        return builtins.list(self._declared.values())

    # -- ensure ------------------------------------------------------------------------
    async def async_ensure(
        self,
        requirement: EnvironmentRequirement | Mapping[str, Any] | str,
        *,
        events: EventCenter | None = None,
        approval_context: Any = None,
        approval: PolicyApproval | None = None,
        policy: Policy | None = None,
    ) -> EnvironmentHandle:
        """Return a ready handle for the requirement (or the id of a declared one), reusing
        a healthy resource with the same reuse key. The returned handle's ``lease_id`` must
        be released exactly once. ``approval`` and ``policy`` are the caller's (an agent's)
        handlers and policy; they default to the manager's own."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller gets no lease
        return (await self._ensure(requirement, events, approval_context, approval, policy))[0]

    async def _ensure(self, requirement: EnvironmentRequirement | Mapping[str, Any] | str,
                      events: EventCenter | None, approval_context: Any,
                      approval: PolicyApproval | None, policy: Policy | None
                      ) -> tuple[EnvironmentHandle, Any]:
        """:meth:`async_ensure`, returning the live resource beside the handle (the
        dispatcher's hot path: no lookup of the resource by the handle afterwards)."""
        self._check_open()
        requirement, key = self._resolve_key(requirement)
        while True:
            self._check_open()  # a retry must not start anything after shutdown began
            slot = self._slots.get(key)
            if slot is None:
                provider, name = self.provider_for(requirement.kind, requirement.provider)
                slot = self._slots[key] = _Slot(key, requirement, provider, name)
            lock = slot.lock
            try:
                lock.acquire_nowait()  # free: taken without the coroutine round trips
            except anyio.WouldBlock:
                await lock.acquire()
            try:
                if slot.closed:
                    continue  # released meanwhile: start afresh
                if slot.resource is None:
                    await self._start(slot, events, (approval_context, approval, policy))
                elif not await self._healthy(slot):  # before every reuse
                    slot.status = "unhealthy"
                    await self._emit(events, "execution_environment.unhealthy", slot)
                    await self._stop(slot, events)
                    await self._start(slot, events, (approval_context, approval, policy))
                lease = f"lease_{next(_lease_numbers)}"
                slot.leases.add(lease)
                self._by_lease[lease] = slot
                if slot.owner_lease is None and requirement.scope != "action_call":
                    slot.owner_lease = f"lease_{next(_lease_numbers)}"
                    slot.leases.add(slot.owner_lease)
                return slot.handle(lease), slot.resource
            finally:
                lock.release()

    async def _start(self, slot: _Slot, events: EventCenter | None,
                     approval: tuple[Any, PolicyApproval | None, Policy | None]) -> None:
        requirement = slot.requirement
        try:
            await self._approve(slot, events, *approval)
            slot.status = "ensuring"
            await self._emit(events, "execution_environment.ensuring", slot)
            slot.resource = await slot.provider.ensure(requirement)
            slot.checked = ProviderHandle(slot.handle_id, requirement, slot.resource)
            slot.loop = self._keep_loop()
        except BaseException as exc:
            slot.closed = True
            slot.status = "failed"
            self._forget(slot)
            with anyio.CancelScope(shield=True):
                await self._emit(events, "execution_environment.failed", slot,
                                 error=f"{type(exc).__name__}: {self.redactor.text(str(exc))}")
            if isinstance(exc, (EnvironmentApprovalRequired, EnvironmentBlocked)):
                raise
            if isinstance(exc, Exception):
                raise EnvironmentStartError(
                    f"{requirement.kind!r} environment from {slot.provider_name!r} failed to "
                    f"start: {type(exc).__name__}: {self.redactor.text(str(exc))}"
                ) from exc
            raise
        if self.closed:  # shut down while it started: give it back at once
            slot.closed = True
            self._forget(slot)
            await self._stop(slot, events)
            raise ManagerClosedError("the execution-environment manager closed while starting "
                                     f"a {requirement.kind!r} environment")
        slot.status = "ready"
        self._by_handle[slot.handle_id] = slot
        with anyio.CancelScope(shield=True):  # the resource exists: never lose it to a cancel
            await self._emit(events, "execution_environment.ready", slot)

    async def _approve(self, slot: _Slot, events: EventCenter | None, context: Any,
                       approval: PolicyApproval | None, base: Policy | None) -> None:
        requirement = slot.requirement
        policy = (base or self.policy).merge(requirement.policy)
        mode = policy.approval_mode
        if mode != "deny" and not (requirement.approval_required or mode == "always"):
            return
        if mode != "deny" and requirement.id in self._approved:
            return
        if mode in ("never", "deny"):
            raise EnvironmentBlocked(
                f"{requirement.kind!r} environment needs approval and approval_mode is {mode!r}"
            )
        request = ApprovalRequest(
            subject_type="environment", subject=requirement.kind, subject_id=requirement.id,
            reason=f"start a {requirement.kind!r} environment ({requirement.scope} scope)",
            details={"requirement_id": requirement.id, "scope": requirement.scope,
                     "resource_key": requirement.resource_key},
        )
        for center in _centers(self.events, events):
            await center.emit("policy.approval.requested", _SOURCE, request_id=request.id,
                              requirement_id=requirement.id, kind=requirement.kind)
        decision = await (approval or self.approval).decide(request, context)
        for center in _centers(self.events, events):
            await center.emit(f"policy.approval.{decision.decision}", _SOURCE,
                              request_id=request.id, requirement_id=requirement.id,
                              kind=requirement.kind)
        if decision.decision == "approved":
            return
        if decision.decision == "pending":
            await self._emit(events, "execution_environment.approval_required", slot,
                             request_id=request.id)
            raise EnvironmentApprovalRequired(
                f"{requirement.kind!r} environment is waiting for approval", request
            )
        raise EnvironmentBlocked(
            f"{requirement.kind!r} environment was denied"
            + (f": {decision.reason}" if decision.reason else "")
        )

    def grant(self, requirement_id: str) -> None:
        """Record that a person approved this requirement (after a pending decision)."""
        self._approved.add(requirement_id)

    async def _healthy(self, slot: _Slot) -> bool:
        """The provider's ``async_health_check`` of the slot's resource; an exception is
        an unhealthy answer."""
        try:
            return bool(await slot.provider.async_health_check(slot.checked))
        except Exception:
            return False

    # -- release -----------------------------------------------------------------------
    async def async_release(self, handle: EnvironmentHandle | str, *,
                            events: EventCenter | None = None) -> bool:
        """Drop one reference: the handle's lease, a lease id, or one reference of a handle
        id. Returns False when that reference was already released."""
        done = self.release_nowait(handle)
        if done is not None:
            return done
        slot = self._slot_for(handle)
        if slot is None:
            return False
        with anyio.CancelScope(shield=True):  # a release always completes
            async with slot.lock:
                lease = self._lease_in(slot, handle)  # chosen under the lock: no two
                if slot.closed or lease is None or lease not in slot.leases:  # releases pick one
                    return False
                slot.leases.discard(lease)
                self._by_lease.pop(lease, None)
                if not slot.leases:
                    await self._close(slot, events)
        return True

    def release_nowait(self, handle: EnvironmentHandle | str) -> bool | None:
        """:meth:`async_release` when it needs no waiting: the reference is not the
        resource's last and nobody holds its slot's lock (a health check, a start). Returns
        what :meth:`async_release` would, or None when the release must go through it.
        Nothing awaits, so nothing can interleave: the same as taking the free lock."""
        slot = self._slot_for(handle)
        if slot is None:
            return False
        if slot.lock.locked():
            return None
        lease = self._lease_in(slot, handle)
        if slot.closed or lease is None or lease not in slot.leases:
            return False
        if len(slot.leases) <= 1:
            return None  # the last reference: closing awaits the provider
        slot.leases.discard(lease)
        self._by_lease.pop(lease, None)
        return True

    async def async_release_scope(self, scope: str, owner_id: str | None = None, *,
                                  events: EventCenter | None = None) -> int:
        """Release every resource of ``scope`` owned by ``owner_id`` (all references).
        Returns how many resources were released."""
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
        slots = [s for s in builtins.list(self._slots.values())
                 if s.requirement.scope == scope and s.requirement.owner_id == owner_id]
        count = 0
        with anyio.CancelScope(shield=True):
            for slot in slots:
                async with slot.lock:
                    if slot.closed:
                        continue
                    for lease in slot.leases:
                        self._by_lease.pop(lease, None)
                    slot.leases.clear()
                    await self._close(slot, events)
                    count += 1
        return count

    async def _close(self, slot: _Slot, events: EventCenter | None) -> None:
        """Close a slot whose last reference went (caller holds the slot lock)."""
        slot.closed = True
        self._forget(slot)
        if slot.resource is not None:
            await self._stop(slot, events)
        slot.status = "released"

    async def _stop(self, slot: _Slot, events: EventCenter | None) -> None:
        """Release the slot's current resource exactly once (caller holds the lock)."""
        resource, slot.resource, slot.checked = slot.resource, None, None
        slot.status = "releasing"
        with anyio.CancelScope(shield=True):
            await self._emit(events, "execution_environment.releasing", slot)
            try:
                await slot.provider.release(slot.requirement, resource)
            except Exception as exc:
                await self._emit(events, "execution_environment.failed", slot,
                                 error=f"release failed: {type(exc).__name__}: "
                                 f"{self.redactor.text(str(exc))}")
            slot.status = "released"
            await self._emit(events, "execution_environment.released", slot)

    def _forget(self, slot: _Slot) -> None:
        for lease in slot.leases:
            if self._by_lease.get(lease) is slot:
                del self._by_lease[lease]
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if self._by_handle.get(slot.handle_id) is slot:
            del self._by_handle[slot.handle_id]

    def _slot_for(self, handle: EnvironmentHandle | str) -> _Slot | None:
        """The slot a handle, lease id or handle id refers to."""
        if isinstance(handle, EnvironmentHandle):
            if handle.lease_id is not None:
                return self._by_lease.get(handle.lease_id)
            handle = handle.id
        return self._by_lease.get(handle) or self._by_handle.get(handle)

    @staticmethod
    def _lease_in(slot: _Slot, handle: EnvironmentHandle | str) -> str | None:
        """The reference to drop: the handle's own lease, or for a bare handle id one of the
        callers' references (never the owner's pin, which only the owner's end drops)."""
        if isinstance(handle, EnvironmentHandle):
            if handle.lease_id is not None:
                return handle.lease_id
            handle = handle.id
        if handle != slot.handle_id:
            return handle  # a lease id
        return next((lease for lease in slot.leases if lease != slot.owner_lease), None)

    # -- lookup ------------------------------------------------------------------------
    def inspect(self, id: str) -> EnvironmentHandle | EnvironmentRequirement:
        """The live handle for a handle id, lease id or declared requirement id (the
        requirement itself when it has not been ensured)."""
        slot = self._by_handle.get(id) or self._by_lease.get(id)
        if slot is None:
            slot = next((s for s in self._slots.values() if s.requirement.id == id
                         and not s.closed and s.resource is not None), None)
        if slot is not None:
            return slot.handle()
        if id in self._declared:
            return self._declared[id]
        raise EnvironmentNotFound(f"no environment or requirement with id {id!r}")

    def list(self, scope: str | None = None, *, owner_id: str | None = None,
             kind: str | None = None) -> builtins.list[EnvironmentHandle]:
        """Live handles, optionally filtered by scope, owner and kind."""
        return [
            slot.handle() for slot in builtins.list(self._slots.values())
            if slot.resource is not None and not slot.closed
            and (scope is None or slot.requirement.scope == scope)
            and (owner_id is None or slot.requirement.owner_id == owner_id)
            and (kind is None or slot.requirement.kind == kind)
        ]

    def resource(self, handle: EnvironmentHandle | str) -> Any:
        """The live resource behind a handle (never put it in a model)."""
        slot = self._slot_for(handle)
        if slot is None or slot.closed:
            raise EnvironmentNotFound(f"no live environment for {handle!r}")
        return slot.resource

    # -- shutdown ----------------------------------------------------------------------
    # -- resources started on a host's own event loop ------------------------------------
    def _keep_loop(self) -> Any:
        """The running asyncio loop, watched: when the host's own loop ends (``asyncio.run``
        cancels its remaining tasks before it closes), the resources started on it are
        released there, while their pipes still work, instead of failing at interpreter
        exit. The shared loop of the synchronous API needs no watch (it closes the
        process-wide manager itself)."""
        import asyncio

        from . import _sync

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another async library: the owner's close releases them
            return None
        if loop is _sync._loop or loop in self._keepers:
            return loop
        self._keepers[loop] = loop.create_task(self._keep(loop), name="agently-core-keeper")
        return loop

    async def _keep(self, loop: Any) -> None:
        import asyncio

        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            slots = [s for s in builtins.list(self._slots.values())
                     if s.loop is loop and not s.closed]
            for slot in slots:
                async with slot.lock:
                    if not slot.closed:
                        for lease in slot.leases:
                            self._by_lease.pop(lease, None)
                        slot.leases.clear()
                        await self._close(slot, None)
        finally:
            self._keepers.pop(loop, None)

    async def aclose(self) -> None:
        """Release every resource of every scope; the manager refuses work afterwards."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            while self._slots:  # a start that finishes meanwhile adds no new slot (closed)
                for slot in builtins.list(self._slots.values()):
                    async with slot.lock:
                        if not slot.closed:
                            slot.leases.clear()
                            await self._close(slot, None)
                        self._forget(slot)
        self._by_lease.clear()
        self._stop_keepers()

    def _stop_keepers(self) -> None:
        """End the watch of every host loop (nothing is left to release): a keeper left
        pending is destroyed with the manager, and asyncio reports that."""
        import asyncio

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, task in builtins.list(self._keepers.items()):
            if loop.is_closed() or task.done():
                continue
            if running is loop:
                task.cancel()
            else:
                loop.call_soon_threadsafe(task.cancel)

    async def __aenter__(self) -> ExecutionEnvironmentManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> ExecutionEnvironmentManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- synchronous forms -------------------------------------------------------------
    def ensure(self, requirement: EnvironmentRequirement | Mapping[str, Any] | str) -> EnvironmentHandle:
        from ._sync import run_sync

        return run_sync(self.async_ensure, requirement)

    def release(self, handle: EnvironmentHandle | str) -> bool:
        from ._sync import run_sync

        return run_sync(self.async_release, handle)

    def release_scope(self, scope: str, owner_id: str | None = None) -> int:
        from ._sync import run_sync

        return run_sync(self.async_release_scope, scope, owner_id)

    def close(self) -> None:
        from ._sync import run_sync

        run_sync(self.aclose)

    # -- helpers -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise ManagerClosedError("the execution-environment manager is closed")

    def _resolve_key(self, requirement: EnvironmentRequirement | Mapping[str, Any] | str
                     ) -> tuple[EnvironmentRequirement, str]:
        """The requirement and its reuse key. A requirement object seen before (the
        dispatcher passes the same one on every call of a warm environment) skips
        registering its config's secrets again and hashing its key, as long as none of
        its fields changed since (compared with a snapshot, the config's contents too)."""
        remember = type(requirement) is EnvironmentRequirement
        if remember:
            known = self._known.get(id(requirement))
            if known is not None and known[0] is requirement and known[1] == _fields(
                    requirement):
                return requirement, known[2]
        requirement = self._resolve(requirement)
        key = self._keys.get(requirement.id) or self._key(requirement)
        # objects made per call (action_call and request owners) would only churn the map
        if remember and requirement.scope not in ("action_call", "request"):
            try:
                snapshot = copy.deepcopy(_fields(requirement))
            except Exception:  # an uncopyable config value: resolve it every time
                return requirement, key
            known_map = self._known
            if len(known_map) >= _KNOWN_SIZE:
                known_map.clear()
            known_map[id(requirement)] = (requirement, snapshot, key)
        return requirement, key

    def _resolve(self, requirement: EnvironmentRequirement | Mapping[str, Any] | str
                 ) -> EnvironmentRequirement:
        if isinstance(requirement, str):
            found = self._declared.get(requirement)
            if found is None:
                raise EnvironmentNotFound(f"no declared requirement with id {requirement!r}")
            return found
        requirement = _as_requirement(requirement)
        if requirement.config:
            self.redactor.add_from_config(requirement.config)
        return requirement

    def _key(self, requirement: EnvironmentRequirement) -> str:
        if requirement.scope in _OWNED and requirement.owner_id is None:
            raise ConfigError(
                f"a {requirement.scope!r}-scoped requirement needs an owner_id "
                f"(kind {requirement.kind!r})"
            )
        if requirement.reuse_key:
            # an explicit key shares within its scope and owner, never across owners
            key = (f"{requirement.kind}:{requirement.scope}:{requirement.owner_id or ''}:"
                   f"{requirement.reuse_key}")
        else:
            import hashlib
            import json

            material = json.dumps(
                [requirement.kind, requirement.scope, requirement.owner_id,
                 requirement.resource_key, requirement.provider, requirement.config,
                 requirement.policy, requirement.approval_required],
                sort_keys=True, default=repr,
            )
            digest = hashlib.blake2b(material.encode(), digest_size=12).hexdigest()
            key = f"{requirement.kind}:{requirement.scope}:{digest}"
        return key

    async def _emit(self, events: EventCenter | None, event_type: str, slot: _Slot,
                    **extra: Any) -> None:
        for center in _centers(self.events, events):
            if center.active:
                req = slot.requirement
                await center.emit(event_type, _SOURCE, handle_id=slot.handle_id,
                                  requirement_id=req.id, kind=req.kind, scope=req.scope,
                                  owner_id=req.owner_id, resource_key=req.resource_key,
                                  status=slot.status, ref_count=len(slot.leases), **extra)


def _checked_provider(provider: Any, kind: str, registration: Any = None) -> Any:
    """``provider``, once it has the coroutines the manager calls; otherwise a
    :class:`~agently_core.errors.PluginError` that says what is missing (a health check
    that cannot be called would make every reuse restart the resource)."""
    import inspect

    missing = [name for name in ("ensure", "async_health_check", "release")
               if not inspect.iscoroutinefunction(getattr(provider, name, None))]
    if not missing:
        return provider
    where = (f"provider {registration.name!r} of plugin {registration.plugin!r}"
             if registration is not None else f"provider {type(provider).__name__}")
    hint = (" (health_check(requirement, resource) is now async_health_check(handle), with "
            "handle.requirement and handle.resource)"
            if "async_health_check" in missing and hasattr(provider, "health_check") else "")
    raise PluginError(f"{where} for kind {kind!r} lacks the async method(s) "
                      f"{', '.join(missing)}{hint}")


def _fields(requirement: EnvironmentRequirement) -> tuple[Any, ...]:
    """What a requirement's reuse key and registered secrets depend on (its id aside)."""
    return (requirement.id, requirement.kind, requirement.scope, requirement.owner_id,
            requirement.resource_key, requirement.provider, requirement.reuse_key,
            requirement.approval_required, requirement.config, requirement.policy)


def _centers(own: EventCenter, other: EventCenter | None) -> Iterable[EventCenter]:
    """Where an event goes: the caller's center (which forwards to the manager's when it is
    its parent) and the manager's, each observer reached once."""
    if other is None or other is own:
        return (own,)
    if other.parent is own:
        return (other,)
    return (own, other)


def _as_requirement(requirement: EnvironmentRequirement | Mapping[str, Any]) -> EnvironmentRequirement:
    if isinstance(requirement, EnvironmentRequirement):
        return requirement
    if isinstance(requirement, Mapping):
        return EnvironmentRequirement.model_validate(dict(requirement))
    raise TypeError(f"not an environment requirement: {requirement!r}")


_default: ExecutionEnvironmentManager | None = None


def get_manager() -> ExecutionEnvironmentManager:
    """The process-wide manager, closed at interpreter exit (global scope included)."""
    global _default
    if _default is None or _default.closed:
        _default = ExecutionEnvironmentManager()
        subscribe_plugin_observers(_default.events, _default.plugins)
        from . import _sync

        _sync.on_shutdown(_default.aclose)
    return _default


def subscribe_plugin_observers(events: EventCenter, plugins: PluginManager) -> None:
    """Subscribe every observer registered through ``register_event_observers``; one
    registered with ``setting="NAME"`` only when that boolean setting is on (``otel``)."""
    for registration in plugins.registrations("event_observer").values():
        setting = registration.options.get("setting")
        if setting is not None and not getattr(plugins.config, setting, False):
            continue
        events.subscribe(registration.load(), registration.options.get("events", ("*",)),
                         name=f"{registration.plugin}:{registration.name}")
