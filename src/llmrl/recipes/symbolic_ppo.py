"""Symbolic-PPO: GLAM's non-language baseline, Stable-Baselines3's PPO on BabyAI's symbolic view.

GLAM (Carta et al. 2023) compares its LM policy with a PPO agent that sees what BabyAI agents
usually see: the 7x7x3 egocentric grid of (object, colour, state) codes, the heading and the
instruction as word ids, never the description sentences. PPO itself is SB3's; this module adds
what SB3 lacks for BabyAI-Text:

- :class:`SymbolicObservation`: the observation as SB3 spaces (the ``Text`` fields become a
  fixed-length array of word ids, the sentences are dropped);
- :class:`BabyAIFeatures`: BabyAI's encoder in small (per-cell code embeddings, a conv net over
  the grid, a GRU over the instruction, the heading), as an SB3 features extractor;
- :func:`train_symbolic_ppo`: a run directory that the other recipes' tools read
  (``config.json``, ``progress.csv``, ``tb/``, ``checkpoints/``, ``eval/``), resumable;
- :class:`SB3PolicyAgent`: the trained policy behind llmrl's :class:`~llmrl.agents.base.Agent`,
  so the final evaluation is the same harness, with the same levels, as every other agent.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from minigrid.core.constants import COLOR_NAMES, OBJECT_TO_IDX, STATE_TO_IDX
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
from llmrl.agents.base import Agent
from llmrl.evaluation import evaluate, write_results
from llmrl.runs import PROGRESS_COLUMNS

__all__ = [
    "MISSION_VOCAB",
    "PROGRESS_COLUMNS",
    "BabyAIFeatures",
    "SB3PolicyAgent",
    "SymbolicObservation",
    "SymbolicPPOConfig",
    "encode_mission",
    "symbolic_observation",
    "train_symbolic_ppo",
]

RECIPE = "symbolic-ppo"
PAD, UNK = 0, 1
# BabyAI's grammar (minigrid.envs.babyai.core.verifier): verbs, articles, the sequencing words and
# ObjDesc's locations. Colours and object names come from minigrid so a new one cannot be missed.
_INSTRUCTION_WORDS = (
    "go", "to", "the", "a", "pick", "up", "put", "next", "open", "then", "after", "you", "and",
    "on", "your", "left", "right", "in", "front", "of", "behind",
)  # fmt: skip
MISSION_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(("<pad>", "<unk>", *COLOR_NAMES, *OBJECT_TO_IDX, *_INSTRUCTION_WORDS))
)
_WORD_ID = {w: i for i, w in enumerate(MISSION_VOCAB)}
# Largest code per image channel; bounds other than [0, 255] also keep SB3 from treating the grid
# as a picture (it would divide by 255 and transpose it).
_CODE_MAX = np.array([max(OBJECT_TO_IDX.values()), len(COLOR_NAMES) - 1, max(STATE_TO_IDX.values())], np.uint8)



# --- observation ------------------------------------------------------------------------------


def encode_mission(mission: str, length: int = 16) -> np.ndarray:
    """Word ids of ``mission`` over ``MISSION_VOCAB``, cut or padded (0) to ``length``.

    Punctuation is dropped: ``then`` and ``after`` already say in which order sub-goals come.
    """
    words = re.sub(r"[^a-z ]", " ", mission.lower()).split()
    ids = np.full(length, PAD, dtype=np.int64)
    tokens = [_WORD_ID.get(w, UNK) for w in words[:length]]
    ids[: len(tokens)] = tokens
    return ids


def symbolic_observation(obs: dict[str, Any], mission_len: int = 16) -> dict[str, Any]:
    """A raw BabyAI-Text observation as :class:`SymbolicObservation` returns it."""
    return {
        "image": np.asarray(obs["image"], dtype=np.uint8),
        "direction": int(obs["direction"]),
        "mission": encode_mission(obs["mission"], mission_len),
    }


class SymbolicObservation(gym.ObservationWrapper):
    """BabyAI-Text's Dict observation as spaces SB3 accepts: grid, heading, mission word ids.

    The ``text`` field (GLAM's sentences) is dropped: the baseline must not see the language view.
    """

    def __init__(self, env: gym.Env, mission_len: int = 16) -> None:
        super().__init__(env)
        self.mission_len = mission_len
        shape = env.observation_space["image"].shape
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, np.broadcast_to(_CODE_MAX, shape), shape, np.uint8),
                "direction": spaces.Discrete(4),
                "mission": spaces.Box(0, len(MISSION_VOCAB) - 1, (mission_len,), np.int64),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return symbolic_observation(observation, self.mission_len)


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


@dataclass
class SymbolicPPOConfig:
    """Symbolic-PPO's settings; every field lands in the run's ``config.json``."""

    env_id: str = "BabyAI-Text-GoToLocal-v0"
    """a BabyAI-Text id (``llmrl.envs.TEXT_ENV_IDS``)"""
    seed: int = 0
    """seeds torch, numpy, the policy's sampling and the training levels (env i: seed + i)"""
    total_env_steps: int = 400_000
    """environment steps over all envs (GLAM: 400k on the GoToLocal ablations, 1.5M on MixedTrainLocal);
    rounded up to whole rollouts of ``n_envs * n_steps``"""
    n_envs: int = 16
    """environments stepped in lockstep (one DummyVecEnv)"""
    n_steps: int = 128
    """steps per environment per rollout; one PPO update per rollout"""
    batch_size: int = 256
    """PPO minibatch size"""
    n_epochs: int = 4
    """passes over each rollout"""
    learning_rate: float = 3e-4
    """Adam step size (constant)"""
    gamma: float = 0.99
    """discount (GLAM's)"""
    gae_lambda: float = 0.99
    """GAE's λ (GLAM's)"""
    clip_range: float = 0.2
    """PPO's ε for the probability ratio"""
    ent_coef: float = 0.01
    """entropy bonus weight"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient norm clip"""
    reward_scale: float = 20.0
    """training rewards are multiplied by this (GLAM's x20, so returns are not tiny next to the
    entropy bonus); logged returns and the evaluation stay unscaled"""
    mission_len: int = 16
    """instruction word ids kept (BabyAI's longest Local missions have 12 words)"""
    features_dim: int = 128
    """size of BabyAIFeatures' output, shared by the policy and value heads"""
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
        if (self.n_envs * self.n_steps) % self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} must divide a rollout of n_envs * n_steps = "
                f"{self.n_envs * self.n_steps} steps, or the last minibatch of every epoch is short"
            )

    def to_json(self) -> dict[str, Any]:
        """``config.json``'s content: recipe, label and the run's identity first."""
        d = asdict(self)
        head = {"recipe": RECIPE, "label": self.label, "env_id": self.env_id, "seed": self.seed,
                "total_env_steps": self.total_env_steps}  # fmt: skip
        return {**head, **{k: v for k, v in d.items() if k not in head}}


# Fields that may change when a run is resumed; any other change would make its curve a mix.
_RESUMABLE = {"total_env_steps", "eval_episodes", "eval_seed", "checkpoint_every", "torch_threads", "device", "label"}


# --- the trained policy as an llmrl agent -----------------------------------------------------


PRESETS: dict[str, SymbolicPPOConfig] = {
    # GLAM's scale on its GoToLocal ablations.
    "paper": SymbolicPPOConfig(env_id="BabyAI-Text-GoToLocal-v0", total_env_steps=400_000),
    # The GLAM cpu preset's level and env-step budget, with rollouts of the same 16 x 32 steps.
    "cpu": SymbolicPPOConfig(env_id="BabyAI-Text-GoToLocalS5N2-v0", total_env_steps=8_192, n_envs=16,
                             n_steps=32, batch_size=128, checkpoint_every=2_048),
}


class SB3PolicyAgent(Agent):
    """An SB3 policy on raw BabyAI-Text observations, for :func:`llmrl.evaluation.evaluate`.

    Sampling uses the agent's per-episode generators rather than ``model.predict``'s torch RNG, so
    an episode plays the same whatever the number of environments evaluated alongside it.
    """

    def __init__(self, model: PPO, deterministic: bool = False, name: str = RECIPE, seed: int = 0) -> None:
        self.model = model
        self.deterministic = deterministic
        self.name = name
        self.seed = seed
        self.mission_len = int(model.observation_space["mission"].shape[0])
        self.rngs: dict[int, np.random.Generator] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.rngs[i] = self.episode_rng(self.seed, seed)

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        sym = [symbolic_observation(o, self.mission_len) for o in obs]
        batch = {k: np.stack([np.asarray(s[k]) for s in sym]) for k in sym[0]}
        if self.deterministic:
            actions, _ = self.model.predict(batch, deterministic=True)
            return np.asarray(actions, dtype=np.int64)
        policy = self.model.policy
        with torch.no_grad():
            obs_t, _ = policy.obs_to_tensor(batch)
            probs = policy.get_distribution(obs_t).distribution.probs.cpu().numpy().astype(np.float64)
        out = np.empty(len(active), dtype=np.int64)
        for k, i in enumerate(active):
            p = probs[k] / probs[k].sum()
            out[k] = self.rngs[i].choice(len(p), p=p)
        return out


# --- training ---------------------------------------------------------------------------------


def _training_env(env: gym.Env, mission_len: int, reward_scale: float) -> gym.Env:
    # Applied outside SB3's Monitor, so Monitor's episode returns are the unscaled ones.
    env = SymbolicObservation(env, mission_len)
    return gym.wrappers.TransformReward(env, lambda r: r * reward_scale) if reward_scale != 1.0 else env


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (out_dir / "checkpoints").glob("step_*.zip")
             if (m := re.fullmatch(r"step_(\d+)\.zip", p.name))]  # fmt: skip
    return sorted(found)


def _fmt(x: float | int | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x) if isinstance(x, int) else f"{x:.6g}"


class _RunLog(BaseCallback):
    """Writes one ``progress.csv`` row per rollout + update, mirrors it to TensorBoard, checkpoints.

    A rollout's row is written when the next rollout starts (or training ends), the first moment
    SB3's logger holds the losses of the update made on that rollout's data.
    """

    def __init__(self, out_dir: Path, config: SymbolicPPOConfig, start: dict[str, float], progress: bool) -> None:
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        self.out_dir, self.config = out_dir, config
        self.episodes = int(start["episodes"])
        self.wall_offset = start["wall_s"]
        self.last_ckpt = int(start["env_steps"])
        steps = int(start["env_steps"])
        # purge_step drops events a killed run logged after its last checkpoint.
        self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=steps or None)
        self.bar = tqdm(total=config.total_env_steps, initial=steps, unit="step", desc=config.label,
                        disable=not progress, dynamic_ncols=True)  # fmt: skip
        self.csv = (out_dir / "progress.csv").open("a", newline="")
        self.writer = csv.writer(self.csv)
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
        self.csv.close()
        self.tb.flush()

    def _write_row(self) -> None:
        self.pending = False
        now, steps = time.perf_counter(), self.num_timesteps
        logged = self.model.logger.name_to_value
        train = {k: logged.get(f"train/{k}") for k in ("policy_gradient_loss", "value_loss", "entropy_loss",
                                                        "approx_kl", "clip_fraction")}  # fmt: skip
        ep = self.finished
        self.finished = []
        self.episodes += len(ep)
        row = {
            "env_steps": steps,
            "updates": steps // (self.config.n_envs * self.config.n_steps),
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
        self.writer.writerow([_fmt(row[c]) for c in PROGRESS_COLUMNS])
        self.csv.flush()
        for key in ("success_rate", "mean_return", "mean_length", "episodes", "steps_per_s"):
            if row[key] is not None:
                self.tb.add_scalar(f"charts/{key}", row[key], steps)
        for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
            if row[key] is not None:
                self.tb.add_scalar(f"losses/{key}", row[key], steps)
        if row["success_rate"] is not None:
            self.bar.set_postfix(success=f"{row['success_rate']:.2f}", refresh=False)
        if steps - self.last_ckpt >= self.config.checkpoint_every:
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        steps = self.num_timesteps
        path = self.out_dir / "checkpoints" / f"step_{steps:09d}.zip"
        if path.exists():
            return
        tmp = path.with_name(path.name + ".tmp")  # a suffix, so SB3 does not append ".zip"
        self.model.save(tmp)
        os.replace(tmp, path)  # a killed save never leaves a half-written checkpoint
        self.last_ckpt = steps


def _read_progress(path: Path, upto: int) -> list[dict[str, str]]:
    """``progress.csv``'s rows up to env step ``upto`` (later ones came after the last checkpoint)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["env_steps"]) <= upto]


def _write_progress(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PROGRESS_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _check_resumable(out_dir: Path, config: SymbolicPPOConfig) -> None:
    saved_path = out_dir / "config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    now = config.to_json()
    changed = {k: (saved.get(k), v) for k, v in now.items() if k not in _RESUMABLE and saved.get(k) != v}
    if changed:
        diff = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(
            f"{out_dir} was trained with other settings ({diff}); resume with the same ones or use a new out_dir"
        )


def train_symbolic_ppo(
    config: SymbolicPPOConfig, out_dir: str | Path, resume: bool = False, progress: bool = True
) -> Path:
    """Train Symbolic-PPO into the run directory ``out_dir`` and evaluate it there; returns ``out_dir``.

    ``resume=True`` continues from the latest checkpoint up to ``config.total_env_steps`` (a
    finished run only re-runs the evaluation). Training envs restart from fresh levels then, so a
    resumed run is deterministic but not bit-identical to one that was never stopped.
    """
    out = Path(out_dir)
    if not resume and (out / "progress.csv").exists():
        raise FileExistsError(f"{out} already holds a run; pass resume=True to continue it or pick a new out_dir")
    if resume:
        _check_resumable(out, config)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)

    ckpts = _checkpoints(out) if resume else []
    start_steps = ckpts[-1][0] if ckpts else 0
    # Different seeds after a resume, so the continued segment does not replay the first levels.
    seed = config.seed + start_steps
    env = make_vec_env(
        config.env_id, n_envs=config.n_envs, seed=seed, wrapper_class=_training_env,
        wrapper_kwargs={"mission_len": config.mission_len, "reward_scale": config.reward_scale},
    )  # fmt: skip
    if ckpts:
        model = PPO.load(ckpts[-1][1], env=env, device=config.device)
        model.set_random_seed(seed)
    else:
        model = PPO(
            "MultiInputPolicy", env,
            n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
            learning_rate=config.learning_rate, gamma=config.gamma, gae_lambda=config.gae_lambda,
            clip_range=config.clip_range, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
            max_grad_norm=config.max_grad_norm, seed=seed, device=config.device, verbose=0,
            policy_kwargs={"features_extractor_class": BabyAIFeatures,
                           "features_extractor_kwargs": {"features_dim": config.features_dim}},
        )  # fmt: skip

    rows = _read_progress(out / "progress.csv", start_steps)
    _write_progress(out / "progress.csv", rows)
    last = rows[-1] if rows else {}
    start = {"env_steps": start_steps, "episodes": float(last.get("episodes") or 0),
             "wall_s": float(last.get("wall_s") or 0)}  # fmt: skip
    if model.num_timesteps < config.total_env_steps:
        log = _RunLog(out, config, start, progress)
        model.learn(config.total_env_steps - model.num_timesteps, callback=log, reset_num_timesteps=False)
    env.close()

    if config.eval_episodes > 0:
        agent = SB3PolicyAgent(model, deterministic=False, name=config.label, seed=config.seed)
        result = evaluate(
            agent, lambda: gym.make(config.env_id), n_episodes=config.eval_episodes,
            n_envs=min(config.n_envs, config.eval_episodes), seed=config.eval_seed, env_id=config.env_id,
        )  # fmt: skip
        ckpts = _checkpoints(out)
        meta = {"recipe": RECIPE, "label": config.label, "env_steps": model.num_timesteps, "deterministic": False,
                "checkpoint": str(ckpts[-1][1].relative_to(out)) if ckpts else None}  # fmt: skip
        write_results([result], out / "eval", meta=meta)
    return out

