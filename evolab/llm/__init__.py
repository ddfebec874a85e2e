"""LLM backends behind one small interface, with the request cache, usage and cost."""
from .base import BACKENDS, Backend, BudgetExceeded, Completion, LLMError, register_backend
from .client import LLMClient, make_backend, request_key
from .fake import FakeBackend, scripted_reply
from .openai_backend import OpenAICompatibleBackend

__all__ = [
    "BACKENDS", "Backend", "BudgetExceeded", "Completion", "LLMError", "register_backend", "LLMClient",
    "make_backend", "request_key", "FakeBackend", "scripted_reply", "OpenAICompatibleBackend",
]
