"""Symbolic-PPO: GLAM's non-language baseline, Stable-Baselines3's PPO on BabyAI's symbolic view.

GLAM (Carta et al. 2023) compares its LM policy with a PPO agent that sees what BabyAI agents
usually see (:mod:`llmrl.envs.babyai_symbolic`): the egocentric grid of codes, the heading and the
instruction as word ids, never the description sentences. PPO itself is SB3's; this recipe adds

- :class:`BabyAIFeatures`: BabyAI's encoder in small (per-cell code embeddings, a conv net over
  the grid, a GRU over the instruction, the heading), as an SB3 features extractor;
- :func:`run`: the shared run folder (``config.json``, ``progress.csv``, ``tb/``,
  ``checkpoints/``, ``eval/``), resumable; the final evaluation runs the trained policy as an
  llmrl agent (:class:`llmrl.agents.sb3.SB3PolicyAgent`) on the same levels as every other agent.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import llmrl.envs
from llmrl.agents.sb3 import SB3PolicyAgent
from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs.babyai_symbolic import PAD, SymbolicObservation
from llmrl.evaluation import evaluate, write_results
from llmrl.rl.ppo import PPOConfig
from llmrl.runs import PROGRESS_COLUMNS, ProgressLog, RunFolder, RunResult, env_seeds

RECIPE = "symbolic-ppo"

# --- encoder ----------------------------------------------------------------------------------


class BabyAIFeatures(BaseFeaturesExtractor):
    """Grid, instruction and heading -> one feature vector, after BabyAI's agent (Chevalier-Boisvert et al. 2019).

    Each cell's three codes index one shared table with per-channel offsets and their embeddings
    are summed (BabyAI 1.1's "bag of words" image embedding), so a red key and a red ball share
    "red". Two 3x3 convs and a 2x2 max-pool keep a coarse 3x3 map (where the target is matters
    for navigation); the instruction is a GRU's state after its last word. The parts are
    concatenated rather than FiLM-combined: simpler, and enough for the Local levels.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        features_dim: int = 128,
        cell_dim: int = 16,
        word_dim: int = 32,
        mission_dim: int = 64,
    ) -> None:
        super().__init__(observation_space, features_dim)
        n_codes = observation_space["image"].high.reshape(-1, 3).max(0).astype(np.int64) + 1
        self.register_buffer("offsets", torch.as_tensor(np.concatenate([[0], np.cumsum(n_codes)[:-1]])))
        self.cells = nn.Embedding(int(n_codes.sum()), cell_dim)
        self.conv = nn.Sequential(
            nn.Conv2d(cell_dim, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        h, w = observation_space["image"].shape[:2]
        conv_dim = 64 * (h // 2) * (w // 2)
        self.words = nn.Embedding(int(observation_space["mission"].high.max()) + 1, word_dim, padding_idx=PAD)
        self.gru = nn.GRU(word_dim, mission_dim, batch_first=True)
        n_dir = int(observation_space["direction"].n)
        self.head = nn.Sequential(nn.Linear(conv_dim + mission_dim + n_dir, features_dim), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands Box fields over as floats and Discrete ones one-hot.
        codes = observations["image"].long() + self.offsets  # (B, H, W, 3)
        grid = self.cells(codes).sum(3).permute(0, 3, 1, 2)  # (B, cell_dim, H, W)
        ids = observations["mission"].long()
        out, _ = self.gru(self.words(ids))  # padding comes last, so it never reaches earlier states
        last = (ids != PAD).sum(1).clamp(min=1) - 1
        mission = out[torch.arange(len(ids), device=ids.device), last]
        heading = observations["direction"].reshape(len(ids), -1)  # the rollout buffer adds a dim
        return self.head(torch.cat([self.conv(grid), mission, heading], 1))


# --- configuration ----------------------------------------------------------------------------


def _sb3_ppo() -> PPOConfig:
    """The baseline's PPO: GLAM's γ, λ and coefficients; SB3's usual learning rate, rollouts and minibatches."""
    return PPOConfig(n_steps=128, n_epochs=4, minibatch_size=256, learning_rate=3e-4)


@dataclass
class SymbolicPPOConfig:
    """Symbolic-PPO's settings; every field lands in the run's ``config.json``."""

    env_id: str = "BabyAI-Text-GoToLocal-v0"
    """a BabyAI-Text id (``llmrl.envs.TEXT_ENV_IDS``)"""
    seed: int = 0
    """seeds torch, numpy, the policy's sampling and the training levels (env i: seed + i)"""
    total_env_steps: int = 400_000
    """environment steps over all envs (GLAM: 400k on the GoToLocal ablations, 1.5M on MixedTrainLocal);
    rounded up to whole rollouts of ``n_envs * ppo.n_steps``"""
    n_envs: int = 16
    """environments stepped in lockstep (one DummyVecEnv)"""
    ppo: PPOConfig = field(default_factory=_sb3_ppo)
    """PPO's settings (rollout length, epochs, minibatch, learning rate, clipping, coefficients)"""
    reward_scale: float = 20.0
    """training rewards are multiplied by this (GLAM's x20, so returns are not tiny next to the
    entropy bonus); logged returns and the evaluation stay unscaled"""
    mission_len: int = 16
    """instruction word ids kept (BabyAI's longest Local missions have 12 words)"""
    features_dim: int = 128
    """size of BabyAIFeatures' output, shared by the policy and value heads"""
    memory: bool = False
    """an LSTM after the encoder (sb3-contrib's RecurrentPPO), one state shared by actor and
    critic, as in BabyAI's agent and GLAM's Symbolic-PPO (memory dim 128); without it the policy
    sees only the current view"""
    lstm_hidden: int = 128
    """the LSTM's state size (BabyAI: 128)"""
    eval_episodes: int = 100
    """final evaluation episodes with llmrl's harness (episode k: eval_seed + k); 0 skips it"""
    eval_seed: int = 100_000
    """first evaluation level; the GLAM recipe uses the same, so both face the same levels"""
    checkpoint_every: int = 50_000
    """env steps between checkpoints (the last step is always saved)"""
    label: str = RECIPE
    """the run's name in tables and plots"""
    torch_threads: int = 0
    """torch intra-op threads; 0 leaves torch's default (OMP_NUM_THREADS)"""
    device: str = "cpu"
    """torch device; this network is small enough that a GPU rarely pays off"""

    def __post_init__(self) -> None:
        if self.env_id not in llmrl.envs.TEXT_ENV_IDS:
            raise ValueError(f"Unknown env_id {self.env_id!r}; BabyAI-Text ids: {', '.join(llmrl.envs.TEXT_ENV_IDS)}")
        require_positive(self, "total_env_steps", "n_envs", "mission_len", "features_dim", "checkpoint_every",
                         "lstm_hidden")
        if self.eval_episodes < 0:
            raise ValueError(f"eval_episodes must be >= 0, got {self.eval_episodes}")
        if (self.n_envs * self.ppo.n_steps) % self.ppo.minibatch_size:
            raise ValueError(
                f"ppo.minibatch_size {self.ppo.minibatch_size} must divide a rollout of n_envs * ppo.n_steps = "
                f"{self.n_envs * self.ppo.n_steps} steps, or the last minibatch of every epoch is short"
            )


Config = SymbolicPPOConfig

# Fields that may change when a run is resumed; any other change would make its curve a mix.
_RESUMABLE = ("total_env_steps", "eval_episodes", "eval_seed", "checkpoint_every", "torch_threads", "device", "label")

PRESETS: dict[str, SymbolicPPOConfig] = {
    # GLAM's scale on its GoToLocal ablations.
    "paper": SymbolicPPOConfig(env_id="BabyAI-Text-GoToLocal-v0", total_env_steps=400_000),
    # The GLAM cpu preset's level and env-step budget, with rollouts of the same 16 x 32 steps.
    "cpu": SymbolicPPOConfig(env_id="BabyAI-Text-GoToLocalS5N2-v0", total_env_steps=8_192, n_envs=16,
                             ppo=PPOConfig(n_steps=32, n_epochs=4, minibatch_size=128, learning_rate=3e-4),
                             checkpoint_every=2_048),
}


def config_from(preset: str = "cpu", **overrides: Any) -> SymbolicPPOConfig:
    """A preset with (dotted) fields replaced; unknown names are errors that list the valid ones."""
    return _config_from(PRESETS, preset, overrides)


# --- training ---------------------------------------------------------------------------------


def _training_env(env: gym.Env, mission_len: int, reward_scale: float) -> gym.Env:
    # Applied outside SB3's Monitor, so Monitor's episode returns are the unscaled ones.
    env = SymbolicObservation(env, mission_len)
    return gym.wrappers.TransformReward(env, lambda r: r * reward_scale) if reward_scale != 1.0 else env


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (out_dir / "checkpoints").glob("step_*.zip")
             if (m := re.fullmatch(r"step_(\d+)\.zip", p.name))]  # fmt: skip
    return sorted(found)


class _RunLog(BaseCallback):
    """Writes one ``progress.csv`` row per rollout + update (through :class:`llmrl.runs.ProgressLog`)
    and the checkpoints.

    A rollout's row is written when the next rollout starts (or training ends), the first moment
    SB3's logger holds the losses of the update made on that rollout's data.
    """

    def __init__(self, out_dir: Path, config: SymbolicPPOConfig, log: ProgressLog, start: dict[str, float],
                 progress: bool) -> None:
        super().__init__()
        from tqdm.auto import tqdm

        self.out_dir, self.config, self.log = out_dir, config, log
        self.episodes = int(start["episodes"])
        self.wall_offset = start["wall_s"]
        self.last_ckpt = int(start["env_steps"])
        self.bar = tqdm(total=config.total_env_steps, initial=int(start["env_steps"]), unit="step", desc=config.label,
                        disable=not progress, dynamic_ncols=True)  # fmt: skip
        self.pending = False
        self.finished: list[tuple[bool, float, int]] = []  # (success, unscaled return, length)

    def _on_training_start(self) -> None:
        self.t0 = self.t_last = time.perf_counter()
        self.steps_last = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.pending:
            self._write_row()

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "episode" in info:
                ep = info["episode"]
                self.finished.append((bool(info.get("success", ep["r"] > 0)), float(ep["r"]), int(ep["l"])))
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        self.pending = True

    def _on_training_end(self) -> None:
        if self.pending:
            self._write_row()
        self.save_checkpoint()
        self.bar.close()

    def _write_row(self) -> None:
        self.pending = False
        now, steps = time.perf_counter(), self.num_timesteps
        logged = self.model.logger.name_to_value
        train = {k: logged.get(f"train/{k}") for k in ("policy_gradient_loss", "value_loss", "entropy_loss",
                                                        "approx_kl", "clip_fraction")}  # fmt: skip
        ep, self.finished = self.finished, []
        self.episodes += len(ep)
        row = {
            "env_steps": steps,
            "updates": steps // (self.config.n_envs * self.config.ppo.n_steps),
            "wall_s": self.wall_offset + now - self.t0,
            "episodes": self.episodes,
            "success_rate": float(np.mean([e[0] for e in ep])) if ep else None,
            "mean_return": float(np.mean([e[1] for e in ep])) if ep else None,
            "mean_length": float(np.mean([e[2] for e in ep])) if ep else None,
            "policy_loss": train["policy_gradient_loss"],
            "value_loss": train["value_loss"],
            "entropy": -train["entropy_loss"] if train["entropy_loss"] is not None else None,
            "approx_kl": train["approx_kl"],
            "clip_fraction": train["clip_fraction"],
            "steps_per_s": (steps - self.steps_last) / max(now - self.t_last, 1e-9),
        }
        self.t_last, self.steps_last = now, steps
        self.log.write(row)
        if row["success_rate"] is not None:
            self.bar.set_postfix(success=f"{row['success_rate']:.2f}", refresh=False)
        if steps - self.last_ckpt >= self.config.checkpoint_every:
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        steps = self.num_timesteps
        path = self.out_dir / "checkpoints" / f"step_{steps:09d}.zip"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")  # a suffix, so SB3 does not append ".zip"
        self.model.save(tmp)
        os.replace(tmp, path)  # a killed save never leaves a half-written checkpoint
        self.last_ckpt = steps


def _algorithm(config: SymbolicPPOConfig) -> tuple[Any, str, dict[str, Any]]:
    """SB3's PPO, or sb3-contrib's RecurrentPPO with ``memory``: (class, policy name, policy kwargs)."""
    if not config.memory:
        return PPO, "MultiInputPolicy", {}
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO, "MultiInputLstmPolicy", {"lstm_hidden_size": config.lstm_hidden, "shared_lstm": True,
                                                  "enable_critic_lstm": False}


def load_checkpoint(config: SymbolicPPOConfig, path: str | os.PathLike[str], env: Any = None) -> Any:
    """A run's SB3 checkpoint (``checkpoints/step_*.zip``) as the model class its config trains."""
    algo, _, _ = _algorithm(config)
    return algo.load(path, env=env, device=config.device)


def _model(config: SymbolicPPOConfig, env: Any, seed: int, ckpts: list[tuple[int, Path]]) -> Any:
    """A new SB3 PPO (RecurrentPPO with ``memory``) with BabyAIFeatures, or the latest checkpoint's."""
    if ckpts:
        model = load_checkpoint(config, ckpts[-1][1], env)
        model.set_random_seed(seed)
        return model
    algo, policy, extra = _algorithm(config)
    p = config.ppo
    return algo(
        policy, env,
        n_steps=p.n_steps, batch_size=p.minibatch_size, n_epochs=p.n_epochs, learning_rate=p.learning_rate,
        gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm, seed=seed, device=config.device, verbose=0,
        policy_kwargs={"features_extractor_class": BabyAIFeatures,
                       "features_extractor_kwargs": {"features_dim": config.features_dim},
                       "optimizer_kwargs": {"eps": p.adam_eps}, **extra},
    )  # fmt: skip


def held_out_evaluation(model: Any, config: SymbolicPPOConfig, label: str | None = None) -> Any:
    """``model`` on the run's held-out levels (``eval_seed``, ``eval_episodes``), sampling its
    actions as GLAM evaluates its LM policy; an :class:`llmrl.evaluation` result."""
    agent = SB3PolicyAgent(model, deterministic=False, name=label or config.label, seed=config.seed)
    return evaluate(
        agent, lambda: gym.make(config.env_id), n_episodes=config.eval_episodes,
        n_envs=min(config.n_envs, config.eval_episodes), seed=config.eval_seed, env_id=config.env_id,
    )  # fmt: skip


def run(config: SymbolicPPOConfig, out: str | os.PathLike[str], *, resume: bool = False,
        progress: bool = True) -> RunResult:
    """Train Symbolic-PPO into the run folder ``out`` and evaluate it there.

    ``resume=True`` continues from the latest checkpoint up to ``config.total_env_steps`` (a
    finished run only re-runs the evaluation). Training envs restart from fresh levels then, so a
    resumed run is deterministic but not bit-identical to one that was never stopped. SB3 saves
    its checkpoints as its own zip files (``checkpoints/step_*.zip``); they are the user's own.
    """
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"label": config.label, "env_id": config.env_id, "seed": config.seed,
                                 "total_env_steps": config.total_env_steps})
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    ckpts = _checkpoints(folder.path) if folder.resumed else []
    if folder.resumed and not ckpts and (folder.path / "progress.csv").exists() and len(
            (folder.path / "progress.csv").read_text().splitlines()) > 1:
        raise ValueError(f"{folder.path} has progress rows but no checkpoint: start the run again in a new --out")
    start_steps = ckpts[-1][0] if ckpts else 0
    # Different seeds after a resume, so the continued segment does not replay the first levels.
    seed = env_seeds(config.seed, 1, stride=1, offset=start_steps)[0]
    env = make_vec_env(
        config.env_id, n_envs=config.n_envs, seed=seed, wrapper_class=_training_env,
        wrapper_kwargs={"mission_len": config.mission_len, "reward_scale": config.reward_scale},
    )  # fmt: skip
    model = _model(config, env, seed, ckpts)
    log = folder.progress(PROGRESS_COLUMNS, resume_at=start_steps)
    rows = _rows_before(folder.path / "progress.csv")
    start = {"env_steps": start_steps, "episodes": float(rows[-1].get("episodes") or 0) if rows else 0.0,
             "wall_s": float(rows[-1].get("wall_s") or 0) if rows else 0.0}  # fmt: skip
    if model.num_timesteps < config.total_env_steps:
        model.learn(config.total_env_steps - model.num_timesteps, callback=_RunLog(folder.path, config, log, start, progress),
                    reset_num_timesteps=False)
    log.close()
    env.close()
    metrics: dict[str, Any] = {"env_steps": model.num_timesteps}
    files = {"progress": folder.path / "progress.csv"}
    if config.eval_episodes > 0:
        result = held_out_evaluation(model, config)
        ckpts = _checkpoints(folder.path)
        meta = {"recipe": RECIPE, "label": config.label, "env_steps": model.num_timesteps, "deterministic": False,
                "checkpoint": str(ckpts[-1][1].relative_to(folder.path)) if ckpts else None}  # fmt: skip
        write_results([result], folder.path / "eval", meta=meta)
        files["eval"] = folder.path / "eval" / "results.json"
        metrics[f"{config.label}/success_rate"] = result.summary()["success_rate"]
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, files)


def _rows_before(path: Path) -> list[dict[str, str]]:
    from llmrl.runs import read_rows

    return read_rows(path, "env_steps")
