"""Entry point of agently-core-anthropic: registers names only; imports nothing heavy."""
