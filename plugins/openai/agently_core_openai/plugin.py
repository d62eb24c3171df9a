"""Entry point of agently-core-openai: registers names only; imports nothing heavy."""
