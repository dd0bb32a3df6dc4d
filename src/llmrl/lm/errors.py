"""The language-model layer's error type (a module of its own, so every backend and helper can
raise it without importing the interface)."""


class LMError(RuntimeError):
    """A language-model call failed in a way the caller can act on; the message names the fix."""
