"""The language-model layer: one interface (score, generate, embed) over every backend."""

from llmrl.lm.base import CandidateScores, Generation, LanguageModel, LMError
from llmrl.lm.registry import DEFAULT_MODEL, load_model

__all__ = ["CandidateScores", "DEFAULT_MODEL", "Generation", "LanguageModel", "LMError", "load_model"]
