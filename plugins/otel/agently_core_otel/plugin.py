"""Entry point of agently-core-otel: registers names only; imports nothing heavy."""
