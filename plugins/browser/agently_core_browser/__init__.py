"""agently-core-browser: a managed browser behind an egress guard."""
