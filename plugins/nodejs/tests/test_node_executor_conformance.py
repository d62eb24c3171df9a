"""run_nodejs's executor passes the executor conformance suite with its real provider: the
agent's environment manager starts the isolated Node.js workers the actions declare
(mounted as ``enable_nodejs`` mounts them) and the suite checks the executor's contract on
them. One worker runs asynchronous calls side by side, so the concurrent calls share it."""

from __future__ import annotations

import json
from typing import Any

from agently_core_nodejs import package
from agently_core_nodejs.executor import NodeExecutor
from agently_core_nodejs.provider import NodeSandboxProvider

from agently_core.models import ActionSpec
from agently_core.testing import ExecutorConformance, mounted_specs

CODE = {
    "echo": "process.stdout.write({message});",
    "raises": "throw new Error({message});",
    "slow": "await new Promise((done) => setTimeout(done, {ms}));",
    "concurrent": ("await new Promise((done) => setTimeout(done, {ms}));\n"
                   "process.stdout.write({message});"),
}


class TestNodeExecutorConformance(ExecutorConformance):
    kind = "node"
    deadline_grace = 2.0

    def make_executor(self) -> NodeExecutor:
        return NodeExecutor()

    def make_provider(self) -> NodeSandboxProvider:
        return NodeSandboxProvider()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        [spec] = mounted_specs(package.mount, name=f"run_nodejs_{scenario}")
        return spec, None

    def make_kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        message = json.dumps(values.get("message", ""))
        ms = round(values.get("seconds", 0) * 1000)
        return {"js_code": CODE[scenario].format(message=message, ms=ms)}

    def result_value(self, scenario: str, result: Any) -> Any:
        return result["stdout"]
