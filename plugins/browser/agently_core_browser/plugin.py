"""Entry point of agently-core-browser: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_executors(register):
    register("browser", "agently_core_browser.executor:BrowserExecutor", kind="browser")


@hookimpl
def register_execution_environment_providers(register):
    register("browser", "agently_core_browser.provider:BrowserProvider", kind="browser")


@hookimpl
def register_diagnostics(register):
    register("browser", "agently_core_browser.doctor:check_browser")


@hookimpl
def register_action_packages(register):
    register("browser", "agently_core_browser.package:mount",
             description="navigate_page, snapshot_page (refs), click_element, type_text, "
                         "select_option, press_key, scroll_page, go_back, screenshot_page, "
                         "read_page on a managed Chromium behind the egress guard.",
             actions=("navigate_page", "snapshot_page", "click_element", "type_text",
                      "select_option", "press_key", "scroll_page", "go_back",
                      "screenshot_page", "read_page"))
    register("browser_env_tools", "agently_core_browser.browser_env:mount",
             description="the tools of a BrowserEnv (Playwright MCP), forwarded; mounted by "
                         "the env itself (agent.use_env / env: name: browser).")


@hookimpl
def register_envs(register):
    # @playwright/mcp in agently-core's sandbox, its tools forwarded, behind the egress guard
    register("browser", "agently_core_browser.browser_env:BrowserEnv")
    # the same service in a container (docker or podman), from a locally built image
    register("browser_docker", "agently_core_browser.browser_env_docker:BrowserDockerEnv")
