"""Agents that act in batches of environments: baselines here, LM policies in ``llmrl.roles``."""

from llmrl.agents.base import Agent
from llmrl.agents.baselines import BotAgent, RandomAgent

__all__ = ["Agent", "BotAgent", "RandomAgent"]
