"""Commands plugins add to ``agently-core`` through the ``register_commands`` hook.

Each registered factory is called with a fresh :class:`argparse.ArgumentParser` of its
own; only when it returns a handler is that parser attached to the command line (as the
parent of the command's subparser), so a factory that fails leaves nothing behind. A
factory that cannot be loaded or raises, a name a built-in command already has, and a
name two plugins register (a conflict of the plugin manager) leave the command out; each
becomes a problem that ``agently-core plugins`` and ``doctor`` report.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PluginCommand:
    """A plugin's command whose factory ran: its arguments and its handler."""

    name: str
    help: str
    description: str
    arguments: argparse.ArgumentParser
    handler: Callable[[argparse.Namespace], int | None]
    source: str


def load_commands(pm: Any, builtin: Iterable[str],
                  prog: str = "agently-core") -> tuple[list[PluginCommand], list[dict[str, Any]]]:
    """The usable plugin commands of ``pm`` and the problems of the others (dicts with
    ``command``, ``plugin``, ``distribution``, ``error`` and ``fix``)."""
    from .plugins import load_fix

    taken = frozenset(builtin)
    commands: list[PluginCommand] = []
    problems: list[dict[str, Any]] = []
    for name, registration in sorted(pm.registrations("command").items()):
        def problem(error: str, fix: str, registration: Any = registration,
                    name: str = name) -> None:
            problems.append({"command": name, "plugin": registration.plugin,
                             "distribution": registration.distribution,
                             "error": error, "fix": fix})

        if name in taken:
            problem(f"CLI command {name!r} from {registration.source} has the name of a "
                    "built-in command; it is left out",
                    f"rename it in plugin {registration.plugin!r}, or block the plugin with "
                    f"AGENTLY_PLUGINS_BLOCK={registration.plugin}")
            continue
        try:
            factory = registration.load()
        except Exception as exc:
            problem(str(exc), load_fix(registration, exc))
            continue
        arguments = argparse.ArgumentParser(prog=f"{prog} {name}", add_help=False)
        try:
            handler = factory(arguments)
        except Exception as exc:
            problem(f"CLI command {name!r} from {registration.source}: its factory raised "
                    f"{type(exc).__name__}: {exc}", _fix(registration))
            continue
        if not callable(handler):
            problem(f"CLI command {name!r} from {registration.source}: its factory returned "
                    f"{type(handler).__name__}, not a handler(args)",
                    f"return the handler from the factory of {name!r} ({_fix(registration)})")
            continue
        try:  # what add_commands does; it fails on an argument such as -h/--help
            argparse.ArgumentParser(prog=f"{prog} {name}", parents=[arguments])
        except Exception as exc:
            problem(f"CLI command {name!r} from {registration.source}: its arguments do not "
                    f"fit a command: {type(exc).__name__}: {exc}", _fix(registration))
            continue
        commands.append(PluginCommand(name, registration.options["help"],
                                      registration.options.get("description") or "",
                                      arguments, handler, registration.source))
    return commands, problems


def add_commands(sub: Any, commands: Iterable[PluginCommand]) -> None:
    """Attach ``commands`` to ``sub`` (the ``add_subparsers()`` action of the command line)."""
    for command in commands:
        parser = sub.add_parser(command.name, help=command.help,
                                description=command.description or command.help,
                                parents=[command.arguments])
        parser.set_defaults(func=command.handler)


def _fix(registration: Any) -> str:
    if registration.distribution:
        return (f"report it to {registration.distribution}, or block the plugin with "
                f"AGENTLY_PLUGINS_BLOCK={registration.plugin}")
    return f"fix plugin {registration.plugin!r}"
