"""Entry point of agently-core-web: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_executors(register):
    register("web", "agently_core_web.executor:WebExecutor", kind="web")


@hookimpl
def register_action_packages(register):
    register("browse", "agently_core_web.browse:mount",
             description="browse(url): fetch a web page over HTTP behind the egress guard and "
                         "read it as markdown or text (trafilatura); use_browser=True renders "
                         "it in the managed browser.",
             actions=("browse",))
    register("search", "agently_core_web.search:mount",
             description="search(query): web search through ddgs (backend auto by default), "
                         "compact results; partial_success when some backends fail.",
             actions=("search",))
