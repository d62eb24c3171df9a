"""run_python's executor passes the executor conformance suite with its real provider: the
agent's environment manager starts the isolated workers the actions declare (mounted as
``enable_python`` mounts them) and the suite checks the executor's contract on them."""

from __future__ import annotations

from typing import Any

from agently_core_python import package
from agently_core_python.executor import PythonExecutor
from agently_core_python.provider import PythonSandboxProvider

from agently_core.models import ActionSpec
from agently_core.testing import ExecutorConformance, mounted_specs


def mounted_spec(name: str, **options: Any) -> ActionSpec:
    """The spec ``agent.enable_python(name=name, **options)`` registers."""
    [spec] = mounted_specs(package.mount, name=name, **options)
    return spec


CODE = {
    "echo": "print({message!r}, end='')",
    "raises": "raise ValueError({message!r})",
    "slow": "import time\ntime.sleep({seconds!r})",
    "concurrent": "import time\ntime.sleep({seconds!r})\nprint({message!r}, end='')",
}


class TestPythonExecutorConformance(ExecutorConformance):
    kind = "python"
    # A worker starts in tens of milliseconds, more on a busy machine: the concurrent calls
    # wait long enough for that to stay small beside their serial time.
    concurrent_seconds = 1.0
    deadline_grace = 2.0

    def make_executor(self) -> PythonExecutor:
        return PythonExecutor()

    def make_provider(self) -> PythonSandboxProvider:
        return PythonSandboxProvider()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        # one warm worker per agent, as enable_python() mounts it; the concurrent calls
        # each get their own (a worker runs one call at a time, like a notebook)
        scope = "action_call" if scenario == "concurrent" else "agent"
        return mounted_spec(f"run_python_{scenario}", scope=scope), None

    def make_kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        return {"python_code": CODE[scenario].format(**values)}

    def result_value(self, scenario: str, result: Any) -> Any:
        return result["stdout"]
