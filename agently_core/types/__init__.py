"""Types for plugin authors and hosts: :mod:`agently_core.types.plugins` holds the plugin
protocols and the planning and execution handler contract (the reference's
``agently.types``)."""


def __getattr__(name: str) -> object:
    if name == "plugins":
        import importlib

        return importlib.import_module(f"{__name__}.plugins")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
