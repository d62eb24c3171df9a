"""Model planners on the official OpenAI SDK: ``openai_compatible`` (Chat Completions, for
OpenAI and every compatible server: Ollama, DeepSeek, vLLM...) and ``openai_responses``
(the Responses API).

Kept empty on purpose: discovery imports ``agently_core_openai.plugin`` only. Import the
planners from ``agently_core_openai.chat`` and ``agently_core_openai.responses``.
"""
