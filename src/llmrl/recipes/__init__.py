"""Recipes: one module per system, all of one shape.

Every recipe module exposes

- ``Config``: a dataclass, a docstring under each field, validated in ``__post_init__``;
  sub-configs nest (``ELLMConfig.dqn: DQNConfig``) and are named with a dot from outside;
- ``PRESETS``: named instances of ``Config`` (``cpu`` runs on a laptop, ``paper`` is the paper's scale);
- ``run(config, out, *, resume=False, progress=True) -> RunResult``: writes the run folder(s)
  under ``out`` through :mod:`llmrl.runs` and returns what it wrote and its headline numbers.

A recipe made of stages (KALM) also exposes ``STAGES``, a dict of stage name -> a function with
the same signature as ``run``. ``RECIPES`` below is the registry the CLI reads; modules load only
when used, so one recipe's dependencies (crafter, mujoco) never stop another from running.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Recipe:
    """A registered recipe: where it lives and what it does, in one line."""

    name: str
    module: str
    summary: str
    needs: tuple[str, ...] = ()
    """Importable packages beyond the core ones (named in the error when one is missing)."""

    def load(self) -> ModuleType:
        """Import the recipe's module; a missing optional dependency becomes a clear ImportError."""
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in self.needs:
                raise ImportError(f"recipe {self.name!r} needs the package {e.name.split('.')[0]!r}, which is not "
                                  f"installed: pip install {e.name.split('.')[0]}") from None
            raise


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("glam", "llmrl.recipes.glam", "GLAM: PPO fine-tunes the LM policy over action strings in BabyAI-Text"),
        Recipe("symbolic-ppo", "llmrl.recipes.symbolic_ppo",
               "Symbolic-PPO: Stable-Baselines3 PPO on BabyAI's grid, GLAM's tabula-rasa baseline"),
        Recipe("kalm", "llmrl.recipes.kalm",
               "KALM: offline RL with the grounded LM's imaginary rollouts on CLEVR-Robot (stages)", ("mujoco",)),
        Recipe("ellm", "llmrl.recipes.ellm",
               "ELLM: DQN in Crafter with LM-suggested goals vs no bonus, novelty, RND, oracle", ("crafter",)),
        Recipe("reward-coder", "llmrl.recipes.reward_coder",
               "Eureka/Text2Reward: the LM writes reward code, sandboxed, improved by reflection; vs human and sparse",
               ("minigrid",)),
        Recipe("state-coder", "llmrl.recipes.state_coder",
               "LESR: the LM writes state features and an intrinsic reward, sandboxed, with Lipschitz feedback; TD3",
               ("mujoco",)),
        Recipe("judge-reward", "llmrl.recipes.judge_reward",
               "Kwon et al.: the LM judges outcomes against an objective in words (p(yes) vs p(no)) and pays a DQN; "
               "vs a supervised reward model and the true reward (Ultimatum, matrix games)"),
        Recipe("rlhf", "llmrl.recipes.rlhf",
               "RLHF: a Bradley-Terry reward model on preferences, PPO with a KL penalty; proxy and gold reward vs KL"),
        Recipe("calm", "llmrl.recipes.calm",
               "CALM: the LM proposes commands in TextWorld games and a DRRN picks; vs valid actions and random",
               ("textworld",)),
        Recipe("saycan", "llmrl.recipes.saycan",
               "SayCan: the LM's likelihood of each skill times its learned affordance picks the next skill (BabyAI)"),
        Recipe("world-model", "llmrl.recipes.world_model",
               "LM world model: next-observation accuracy (few-shot, LoRA) and lookahead planning with the LM as simulator"),
        Recipe("offline", "llmrl.recipes.offline",
               "Offline RL on D4RL-style data made here: BC, TD3+BC, IQL, CQL and the Decision Transformer "
               "(return-conditioning curve)", ("mujoco",)),
        Recipe("odt", "llmrl.recipes.odt",
               "Online Decision Transformer: offline pre-training, then online fine-tuning; vs the DT it starts from"),
        Recipe("lamo", "llmrl.recipes.lamo",
               "LaMo: a DT whose transformer is the pre-trained LM (LoRA, MLP embeddings, language loss) vs random "
               "init and a small DT, at 1/10/100% of a dataset"),
        Recipe("pets", "llmrl.recipes.pets", "PETS vs SAC: env steps to a return threshold; PETS started from LM-proposed actions"),
        Recipe("curriculum", "llmrl.recipes.curriculum",
               "Curriculum learning on a BabyAI task space: uniform, ALP-GMM, PLR and an LM teacher; held-out success"),
    )
}


def get(name: str) -> Recipe:
    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, list(RECIPES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown recipe {name!r}{hint}: choose from {', '.join(RECIPES)}")
    return RECIPES[name]


def load(name: str) -> ModuleType:
    """The recipe module ``name`` (``llmrl.recipes.load("glam").run(...)``)."""
    return get(name).load()
