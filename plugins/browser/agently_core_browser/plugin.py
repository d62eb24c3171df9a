"""Entry point of agently-core-browser: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_packages(register):
    register("browser_env_tools", "agently_core_browser.browser_env:mount",
             description="the tools of a BrowserEnv (Playwright MCP), forwarded; mounted by "
                         "the env itself (agent.use_env / env: name: browser).")


@hookimpl
def register_envs(register):
    # @playwright/mcp in agently-core's sandbox, its tools forwarded, behind the egress guard
    register("browser", "agently_core_browser.browser_env:BrowserEnv")
