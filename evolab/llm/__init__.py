"""LLM backends behind one small interface, with the request cache, usage and cost."""
from evolab.llm.base import BACKENDS, Backend, BudgetExceeded, Completion, LLMError, register_backend
from evolab.llm.client import LLMClient, make_backend, request_key
from evolab.llm.fake import FakeBackend, scripted_reply
from evolab.llm.openai_backend import OpenAICompatibleBackend

__all__ = [
    "BACKENDS", "Backend", "BudgetExceeded", "Completion", "LLMError", "register_backend", "LLMClient",
    "make_backend", "request_key", "FakeBackend", "scripted_reply", "OpenAICompatibleBackend",
]
