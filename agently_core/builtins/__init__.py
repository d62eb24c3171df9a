"""Built-in capabilities: :mod:`agently_core.builtins.actions` holds the installed
built-in action packages (the reference's ``agently.builtins``)."""


def __getattr__(name: str) -> object:
    if name == "actions":
        import importlib

        return importlib.import_module(f"{__name__}.actions")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
