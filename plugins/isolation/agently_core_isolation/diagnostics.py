"""``agently-core doctor`` checks: which isolation tiers work on this machine."""

from __future__ import annotations

from typing import Any


def check() -> list[dict[str, Any]]:
    from .sandbox import tier_status

    fixes = {
        "bubblewrap": "apt-get install bubblewrap util-linux (and allow unprivileged user namespaces)",
        "landlock": "a Linux kernel with Landlock ABI 4+ and libseccomp2",
        "trusted_local": "opt in with allow_trusted_local=True (no isolation)",
    }
    return [
        {"name": f"isolation tier {tier}", "ok": status["ok"], "detail": status["detail"],
         "fix": None if status["ok"] else fixes[tier]}
        for tier, status in tier_status().items()
    ]
