"""``agently-core docker build-image``: the command agently-core-docker adds through the
``register_commands`` hook. Imports only ``argparse`` until it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def docker_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``docker`` subcommands to ``parser``; returns the handler."""
    sub = parser.add_subparsers(dest="docker_command", metavar="COMMAND", required=True,
                                help="build-image: build the default image")
    build = sub.add_parser("build-image", help="build the default image from Debian packages "
                           "(mmdebstrap + docker import), once per engine")
    build.add_argument("--tag", default=None,
                       help="the image tag (default agently-core/default:bookworm)")
    build.add_argument("--package", action="append", metavar="NAME",
                       help="a Debian package to include (repeatable; default python3, nodejs)")
    build.add_argument("--rebuild", action="store_true",
                       help="build even when the engine already holds the tag")

    def run(args: argparse.Namespace) -> int:
        import time

        from agently_core.errors import AgentlyError

        from .images import DEFAULT_IMAGE, DEFAULT_PACKAGES, build_default_image, image_exists

        tag = args.tag or DEFAULT_IMAGE
        began = time.monotonic()
        try:
            if not args.rebuild and image_exists(tag):
                print(f"{tag}: already built")
                return 0
            build_default_image(tag, packages=tuple(args.package or DEFAULT_PACKAGES),
                                rebuild=args.rebuild, log=lambda line: print(f"running: {line}"))
        except AgentlyError:
            raise
        print(f"{tag}: built in {time.monotonic() - began:.0f}s")
        return 0

    return run


__all__ = ["docker_command"]
