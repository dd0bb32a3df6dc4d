"""llmrl: a language model's knowledge in reinforcement-learning agents, measured against tabula-rasa RL."""

__version__ = "0.1.0"
