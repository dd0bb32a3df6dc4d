"""GLAM (Carta et al. 2023): ground an LM policy in BabyAI-Text with online PPO.

The LM scores each action string after GLAM's prompt; π(a | p) is the softmax of those scores and
a value head reads the prompt's last hidden state (:class:`llmrl.roles.policy.LMActorCritic`).
PPO then fine-tunes LoRA adapters (or the whole LM) on the environment's reward.

One update, top to bottom (:func:`train`):

1. **rollout**: ``n_envs`` environments step in lockstep for ``n_steps``; each step is one batched
   forward pass over the environments' prompts (all actions scored from a shared prompt cache);
2. **advantages**: GAE over the rollout, bootstrapped from the value of the prompts that follow it;
3. **update**: ``n_epochs`` passes of shuffled minibatches, each a clipped-PPO loss whose gradient
   is accumulated over micro-batches (CPU memory) before one clipped optimizer step;
   both the rollout and the update forward each distinct prompt once (views repeat in small rooms);
4. **log and checkpoint**: a CSV row and TensorBoard scalars per update; every
   ``checkpoint_every`` updates an atomic checkpoint of everything a resumed run needs.

A run directory holds ``config.json``, ``progress.csv``, ``tb/``, ``checkpoints/latest.pt``,
``policy/`` (the final adapter and value head) and ``eval/`` (the final evaluation).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from llmrl.config import config_from as _config_from
from llmrl.config import from_dict, require_positive, to_dict
from llmrl.envs.babyai_text import ACTIONS
from llmrl.envs.vector import EnvGroup
from llmrl.rl.ppo import PPOConfig, gae, ppo_losses
from llmrl.runs import PROGRESS_COLUMNS as RUN_COLUMNS
from llmrl.runs import RunFolder, RunResult, env_seeds, rng
from llmrl.scale import MAY_CHANGE as RAY_MAY_CHANGE
from llmrl.scale import RayConfig

RECIPE = "glam"
# The shared run-folder columns, where each update's time went, and how many updates behind the
# learner the rollout's policy was (0, or 1 with ray.mode = async).
PROGRESS_COLUMNS = (*RUN_COLUMNS, "rollout_s", "update_s", "policy_lag")
SEED_STRIDE = 10_000  # training levels a run may use: seeds s and s + 1 never share one
INITS = ("pretrained", "random")


def _glam_ppo() -> PPOConfig:
    """GLAM's PPO: 32 envs x 40 steps, 4 epochs of minibatches of 64, γ = λ = 0.99, lr 1e-6."""
    return PPOConfig(n_steps=40, n_epochs=4, minibatch_size=64, learning_rate=1e-6)


@dataclass
class GLAMConfig:
    """Everything a GLAM run depends on; ``PRESETS`` holds the named instances."""

    env_id: str = "BabyAI-Text-GoToLocal-v0"
    """BabyAI-Text level to train on (see ``llmrl.envs.TEXT_ENV_IDS``)."""
    model: str = "gemma-3-270m"
    """LM name, folder or .gguf (``llmrl.lm.load_model``); a local transformers model."""
    dtype: str = "auto"
    """auto (bf16 where the CPU has it), bf16 or fp32."""
    device: str = "auto"
    """torch device for the LM: auto (cuda when available, else cpu), cpu, cuda, cuda:1, ..."""
    seed: int = 0
    """Seeds the adapters' and value head's init, the training levels and the action sampling."""
    total_env_steps: int = 400_000
    """Environment steps over all environments; rounded down to whole updates."""
    n_envs: int = 32
    """Environments stepped in lockstep (one batched LM forward per step)."""
    ppo: PPOConfig = field(default_factory=_glam_ppo)
    """PPO's settings (rollout length, epochs, minibatch, learning rate, clipping, coefficients)."""
    micro_batch_size: int = 16
    """Distinct prompts per forward/backward; gradients accumulate over a minibatch."""
    micro_batch_tokens: int = 0
    """0: micro-batches of micro_batch_size prompts in minibatch order; > 0: prompts sorted by
    length and packed into micro-batches of at most this many padded tokens (little padding, few
    passes: the setting for a GPU; see docs/scale.md)."""
    compile: bool = False
    """torch.compile the LM's decoder (dynamic shapes): fewer, fused kernels on a GPU, after a
    compile of a minute or more in the first updates."""
    finetune: str = "lora"
    """lora (peft adapters on the attention projections) or full."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scale numerator (the update is scaled by alpha / r)."""
    reward_scale: float = 20.0
    """GLAM multiplies the environment reward by 20 for training."""
    n_observations: int = 3
    """Observations kept in the prompt (GLAM: 3, with the 2 actions between them)."""
    actions: tuple[str, ...] = ACTIONS
    """The action strings the LM scores, in the environment's action order."""
    normalise_length: bool = False
    """Score actions by mean instead of summed token log-probability."""
    prompt_style: str = "training"
    """training (GLAM's training prompt: every description followed by ", ") or joined (its test prompts)."""
    articles: str = "english"
    """english ("an open door") or glam (GLAM's descriptions wrote "a open door")."""
    init: str = "pretrained"
    """pretrained, or random: the same architecture re-initialised (seeded), pretrained token
    embeddings kept as GLAM's NPAE baseline does — the LM's knowledge removed, nothing else."""
    checkpoint_every: int = 1
    """Environment steps between checkpoints, rounded up to whole updates (1: every update)."""
    eval_episodes: int = 100
    """Final evaluation episodes (greedy and sampled); 0 skips it."""
    eval_seed: int = 100_000
    """Evaluation episode k is reset with eval_seed + k (disjoint from training levels)."""
    torch_threads: int = 0
    """torch threads; 0 keeps torch's default."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out (llmrl.scale): environments in Ray env runners (sync: the same rows as one process),
    or async rollouts by a policy replica one update behind, overlapping the update."""
    label: str = "glam"
    """Series name in plots: runs with the same label and env_id are seeds of one series."""

    def __post_init__(self) -> None:
        from llmrl.envs.babyai_text import TEXT_ENV_IDS

        self.actions = tuple(self.actions)
        if self.env_id not in TEXT_ENV_IDS:
            raise ValueError(f"unknown env_id {self.env_id!r}: GLAM trains on a BabyAI-Text level, one of "
                             f"{', '.join(TEXT_ENV_IDS)}")
        if len(self.actions) < 2 or len(set(self.actions)) != len(self.actions) or not all(self.actions):
            raise ValueError(f"actions must be at least two distinct, non-empty strings, got {self.actions}")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        from llmrl.envs.describe import ARTICLES
        from llmrl.roles.policy import PROMPT_STYLES

        for name, value, choices in (("prompt_style", self.prompt_style, PROMPT_STYLES),
                                     ("articles", self.articles, ARTICLES), ("init", self.init, INITS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        require_positive(self, "n_envs", "micro_batch_size", "total_env_steps", "checkpoint_every", "lora_r")
        if self.micro_batch_tokens < 0:
            raise ValueError(f"micro_batch_tokens must be >= 0 (0: micro_batch_size prompts), got {self.micro_batch_tokens}")
        if self.eval_episodes < 0 or self.n_observations < 1:
            raise ValueError("eval_episodes must be >= 0 and n_observations >= 1")
        if self.ppo.minibatch_size % self.micro_batch_size:
            raise ValueError(
                f"ppo.minibatch_size ({self.ppo.minibatch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )
        if self.batch_size < self.ppo.minibatch_size:
            raise ValueError(
                f"n_envs * ppo.n_steps = {self.batch_size} transitions per update is less than "
                f"ppo.minibatch_size = {self.ppo.minibatch_size}: raise ppo.n_steps or lower ppo.minibatch_size"
            )
        if self.total_env_steps < self.batch_size:
            raise ValueError(
                f"total_env_steps = {self.total_env_steps} is less than one update "
                f"(n_envs * ppo.n_steps = {self.batch_size})"
            )

    @property
    def batch_size(self) -> int:
        return self.n_envs * self.ppo.n_steps

    @property
    def n_updates(self) -> int:
        return self.total_env_steps // self.batch_size


Config = GLAMConfig

PRESETS: dict[str, GLAMConfig] = {
    # GLAM's hyper-parameters and scale (its GoToLocal ablations: 400k steps), for a GPU. GLAM
    # fine-tunes the whole Flan-T5 at lr 1e-6; with LoRA (the default here) use ~1e-4.
    "paper": GLAMConfig(
        env_id="BabyAI-Text-GoToLocal-v0", total_env_steps=400_000, n_envs=32,
        ppo=PPOConfig(n_steps=40, n_epochs=4, minibatch_size=64, learning_rate=1e-6), micro_batch_size=64,
        micro_batch_tokens=32_768, finetune="full", label="glam-paper",
    ),
    # About 30 minutes on 2 CPU cores (docs/results/glam.md): GoToLocal's 5x5 room with 2 distractors (zero-shot
    # gemma-3-270m: greedy 0%, sampled ~12%), one observation in the prompt (a third of the tokens),
    # one epoch (the update costs ~3x the rollout), and LoRA's larger learning rate.
    "cpu": GLAMConfig(
        env_id="BabyAI-Text-GoToLocalS5N2-v0", total_env_steps=8_192, n_envs=16,
        ppo=PPOConfig(n_steps=32, n_epochs=1, minibatch_size=64, learning_rate=2e-4), micro_batch_size=16,
        finetune="lora", n_observations=1, checkpoint_every=1, label="glam-cpu",
    ),
}


def config_from(preset: str = "cpu", **overrides: Any) -> GLAMConfig:
    """A preset with (dotted) fields replaced; unknown names are errors that list the valid ones."""
    return _config_from(PRESETS, preset, overrides)


# --------------------------------------------------------------------------- the policy
def build_policy(config: GLAMConfig) -> Any:
    """The LM (``config.model``) wrapped as an actor-critic with LoRA or full fine-tuning."""
    from llmrl.lm import load_model
    from llmrl.lm.lora import default_lora
    from llmrl.roles.policy import LMActorCritic

    torch.manual_seed(config.seed)  # the value head's and adapters' initial weights
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = load_model(config.model, dtype=config.dtype, device=device)
    if config.init == "random":
        lm.reinitialise(seed=config.seed)
    lora = default_lora(config.lora_r, config.lora_alpha) if config.finetune == "lora" else None
    policy = LMActorCritic(lm, config.actions, lora=lora, normalise_length=config.normalise_length)
    if config.finetune == "full":
        lm.model.requires_grad_(True)
    return policy


def trainable_state(policy: Any, config: GLAMConfig) -> dict[str, torch.Tensor]:
    """The weights training changes: the adapters (or the whole LM) and the value head."""
    state = {f"value_head.{k}": v for k, v in policy.value_head.state_dict().items()}
    if config.finetune == "lora":
        from peft import get_peft_model_state_dict

        state.update({f"lm.{k}": v for k, v in get_peft_model_state_dict(policy.llm).items()})
    else:
        state.update({f"lm.{k}": v for k, v in policy.llm.state_dict().items()})
    return state


def load_trainable_state(policy: Any, config: GLAMConfig, state: dict[str, torch.Tensor]) -> None:
    head = {k.removeprefix("value_head."): v for k, v in state.items() if k.startswith("value_head.")}
    lm = {k.removeprefix("lm."): v for k, v in state.items() if k.startswith("lm.")}
    policy.value_head.load_state_dict(head)
    if config.finetune == "lora":
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(policy.llm, lm)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"checkpoint has adapter weights the model lacks: {result.unexpected_keys[:3]}")
    else:
        policy.llm.load_state_dict(lm)


def policy_key(policy: Any, config: GLAMConfig) -> str:
    """A short hash of the trained weights: names a trained policy's scores in a cache (the same key
    for the recipe's final evaluation and for ``llmrl eval --policy``)."""
    from safetensors.torch import save

    return hashlib.sha256(save(_plain(trainable_state(policy, config)))).hexdigest()[:16]


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


POLICY_FILE = Path("policy") / "weights.safetensors"


def save_policy(policy: Any, config: GLAMConfig, run: Path) -> Path:
    """The trained adapters (or weights) and value head as plain tensors (safetensors: loading
    them runs no code, so a shared run folder is safe to evaluate)."""
    from safetensors.torch import save

    from llmrl.runs import atomic_write_bytes

    path = run / POLICY_FILE
    atomic_write_bytes(path, save(_plain(trainable_state(policy, config))))
    return path


def trained_weights(run_dir: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A run's trained weights: its final ``policy/weights.safetensors``, or else the trainable
    part of its latest checkpoint (read with ``weights_only=True``: tensors and plain data only)."""
    run = Path(run_dir)
    if (run / POLICY_FILE).exists():
        from safetensors.torch import load_file

        try:
            return load_file(run / POLICY_FILE)
        except Exception as e:  # noqa: BLE001 - a damaged file: say which
            raise ValueError(f"{run / POLICY_FILE} cannot be read ({e}): is the run folder complete?") from None
    ckpt = run / "checkpoints" / "latest.pt"
    if ckpt.exists():
        try:
            return torch.load(ckpt, map_location="cpu", weights_only=True)["trainable"]
        except Exception as e:  # noqa: BLE001 - unsafe or damaged content is refused, not run
            raise ValueError(f"{ckpt} cannot be read as plain tensors ({type(e).__name__}): it is damaged, or not "
                             "a checkpoint written by `llmrl train glam`") from None
    raise FileNotFoundError(
        f"{run} has neither {POLICY_FILE} nor checkpoints/latest.pt: "
        "is it a `llmrl train glam` run folder that ran at least one update?"
    )


def load_trained_policy(run_dir: str | os.PathLike[str]) -> tuple[Any, GLAMConfig]:
    """A trained policy from a run folder (see :func:`trained_weights`), ready to evaluate."""
    config = read_config(Path(run_dir))
    state = trained_weights(run_dir)
    policy = build_policy(config)
    load_trainable_state(policy, config, state)
    policy.eval()
    return policy, config


def cached_policy_lm(policy: Any, config: GLAMConfig, cache_file: str | os.PathLike[str] | None = None) -> Any:
    """The trained policy's LM behind the persistent result cache, keyed by its weights
    (:func:`policy_key`): frozen from here on, and small levels repeat their views."""
    from llmrl.lm.cache import CachedLM

    return CachedLM(policy.lm, cache_file, model_key=f"{policy.lm.cache_identity}+trained:{policy_key(policy, config)}")


def read_config(run: Path) -> GLAMConfig:
    """The GLAMConfig a run folder was trained with (its ``config.json``)."""
    import json

    path = run / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass a run folder written by `llmrl train glam`")
    try:
        data = json.loads(path.read_text())
        if data.get("recipe") != RECIPE:
            raise ValueError(f"it holds a {data.get('recipe')!r} run")
        # Runs from before the prompt style existed were trained with the joined descriptions.
        return from_dict(GLAMConfig, {"prompt_style": "joined", **data["config"]})
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path} is not a `llmrl train glam` config ({e}): pass a GLAM run folder") from None


# --------------------------------------------------------------------------- the rollout state
@dataclass
class Rollouts:
    """The environments between updates: what a checkpoint must hold to resume mid-run."""

    envs: EnvGroup  # or a RayEnvGroup (pickled as a plain EnvGroup)
    infos: list[dict[str, Any]]
    histories: list[Any]  # PromptHistory per environment
    ep_return: list[float]
    ep_length: list[int]
    rng: np.random.Generator  # action sampling and minibatch shuffles
    finished: list[tuple[bool, float, int]] = field(default_factory=list)  # (success, return, length)


def make_level(config: GLAMConfig, env_id: str | None = None) -> gym.Env:
    """One BabyAI-Text environment of the run's level (or ``env_id``), with its description settings."""
    import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)

    return gym.make(env_id or config.env_id, articles=config.articles)


def start_rollouts(config: GLAMConfig, make_env: Callable[[], gym.Env] | None = None) -> Rollouts:
    """``n_envs`` environments, each reset once with its seed (later resets continue its own
    generator). ``make_env`` builds a wrapped environment, e.g. with an explorer's bonus on it
    (roles compose as Gymnasium wrappers); by default ``gym.make(config.env_id)``."""
    import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
    from llmrl.roles.policy import PromptHistory

    envs = EnvGroup([make_env() if make_env is not None else make_level(config) for _ in range(config.n_envs)])
    infos = [info for _, info in envs.reset(env_seeds(config.seed, len(envs), stride=SEED_STRIDE))]
    histories = [PromptHistory(config.actions, config.n_observations, config.prompt_style) for _ in range(len(envs))]
    return Rollouts(envs, infos, histories, [0.0] * len(envs), [0] * len(envs), rng(config.seed, 1))


def collect(policy: Any, config: GLAMConfig, ro: Rollouts) -> dict[str, Any]:
    """Step every environment ``ppo.n_steps`` times with the current policy; return the batch."""
    T, N = config.ppo.n_steps, config.n_envs
    prompts: list[list[str]] = []
    actions = torch.zeros(T, N, dtype=torch.long)
    logps = torch.zeros(T, N)
    values = torch.zeros(T, N)
    rewards = torch.zeros(T, N)
    dones = torch.zeros(T, N)
    # Small levels revisit the same views: within one rollout the policy is fixed, so each distinct
    # prompt is scored once (on GoToLocalS5N2 about 200 of 512 prompts are distinct).
    memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def act_values(step_prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        new = [p for p in dict.fromkeys(step_prompts) if p not in memo]
        if new:
            logp_new, v_new = policy(new)
            memo.update({p: (lp, v) for p, lp, v in zip(new, logp_new.cpu(), v_new.cpu())})
        return (torch.stack([memo[p][0] for p in step_prompts]).float().cpu(),
                torch.stack([memo[p][1] for p in step_prompts]).float().cpu())

    with torch.no_grad():
        for t in range(T):
            step_prompts = [h.prompt(info["mission"], info["descriptions"]) for h, info in zip(ro.histories, ro.infos)]
            logp_all, v = act_values(step_prompts)
            probs = logp_all.exp().double().numpy()
            a = np.array([ro.rng.choice(len(config.actions), p=p / p.sum()) for p in probs])
            prompts.append(step_prompts)
            actions[t] = torch.from_numpy(a)
            logps[t] = logp_all[torch.arange(N), actions[t]]
            values[t] = v
            for i, step in enumerate(ro.envs.step([int(x) for x in a])):  # finished episodes reset at once
                ro.histories[i].record(config.actions[a[i]])
                ro.ep_return[i] += step.reward
                ro.ep_length[i] += 1
                rewards[t, i] = step.reward * config.reward_scale
                # A time-out also ends the value target here, as in GLAM (no bootstrap past it).
                if step.done:
                    dones[t, i] = 1.0
                    ro.finished.append((bool(step.info.get("success", step.reward > 0)), ro.ep_return[i],
                                        ro.ep_length[i]))
                    ro.ep_return[i], ro.ep_length[i] = 0.0, 0
                    ro.histories[i].reset()
                ro.infos[i] = step.next_info
        # V of the prompts that follow the rollout, to bootstrap unfinished episodes.
        next_prompts = [h.preview(info["mission"], info["descriptions"]) for h, info in zip(ro.histories, ro.infos)]
        _, last_value = act_values(next_prompts)
    advantages, returns = gae(rewards, values, dones, last_value, config.ppo.gamma, config.ppo.gae_lambda)
    flat = [p for step in prompts for p in step]
    return {
        "prompts": flat, "actions": actions.flatten(), "logp": logps.flatten(),
        "values": values.flatten(), "advantages": advantages.flatten(), "returns": returns.flatten(),
    }


def update(policy: Any, optim: torch.optim.Optimizer, config: GLAMConfig, batch: dict[str, Any],
           rng: np.random.Generator) -> dict[str, float]:
    """PPO epochs over the batch; returns the mean of each loss term."""
    ppo = config.ppo
    trainable = [p for p in policy.parameters() if p.requires_grad]
    n = len(batch["prompts"])
    sums: dict[str, float] = {}
    n_minibatches = 0
    lengths = {p: len(policy.lm.encode(p)) for p in set(batch["prompts"])} if config.micro_batch_tokens else {}
    policy.train()
    for _ in range(ppo.n_epochs):
        order = rng.permutation(n)
        for start in range(0, n - ppo.minibatch_size + 1, ppo.minibatch_size):
            mb = order[start : start + ppo.minibatch_size]
            adv = batch["advantages"][mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)  # per minibatch, as in PPO2 / GLAM
            # Each distinct prompt is forwarded once; its samples share the result (same loss,
            # fewer forward/backward passes when views repeat).
            prompts = [batch["prompts"][j] for j in mb]
            unique = list(dict.fromkeys(prompts))
            if config.micro_batch_tokens:
                unique.sort(key=lengths.__getitem__)  # neighbours in length share a padded width
            slot = {p: k for k, p in enumerate(unique)}
            owner = np.array([slot[p] for p in prompts])
            optim.zero_grad(set_to_none=True)
            for m, m_end in micro_batches(unique, config, lengths):
                sel = np.nonzero((owner >= m) & (owner < m_end))[0]
                idx = mb[sel]
                logp_all, v = policy(unique[m:m_end])
                rows = torch.from_numpy(owner[sel] - m).to(v.device)
                on = {k: batch[k][idx].to(v.device) for k in ("actions", "logp", "values", "returns")}
                out = ppo_losses(
                    logp_all[rows], on["actions"], on["logp"], adv[sel].to(v.device), v[rows],
                    on["values"], on["returns"],
                    clip_range=ppo.clip_range, vf_coef=ppo.vf_coef, ent_coef=ppo.ent_coef,
                    normalise_advantages=False,
                )
                (out.total * len(sel) / len(mb)).backward()
                for k in ("policy", "value", "entropy", "approx_kl", "clip_fraction"):
                    sums[k] = sums.get(k, 0.0) + float(getattr(out, k).detach()) * len(sel) / len(mb)
            torch.nn.utils.clip_grad_norm_(trainable, ppo.max_grad_norm)
            optim.step()
            n_minibatches += 1
    policy.eval()
    return {k: v / max(n_minibatches, 1) for k, v in sums.items()}


def micro_batches(prompts: list[str], config: GLAMConfig, lengths: dict[str, int]) -> list[tuple[int, int]]:
    """``[start, stop)`` slices of ``prompts`` that are forwarded together: ``micro_batch_size``
    at a time, or (``micro_batch_tokens``, prompts sorted by length) as many as fit the token
    budget once padded to the longest."""
    if not config.micro_batch_tokens:
        return [(m, min(m + config.micro_batch_size, len(prompts))) for m in range(0, len(prompts), config.micro_batch_size)]
    out, start = [], 0
    for k in range(1, len(prompts) + 1):
        if k == len(prompts) or (k - start + 1) * lengths[prompts[k]] > config.micro_batch_tokens:
            out.append((start, k))
            start = k
    return out


# --------------------------------------------------------------------------- the run
def run(config: GLAMConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train the GLAM policy described by ``config`` into the run folder ``out``, then evaluate it.

    With ``resume=True`` the run in ``out`` continues from its last checkpoint (same config
    required) and reproduces the uninterrupted run's rows exactly (CPU, same thread count).
    """
    folder = RunFolder(out, RECIPE, config, resume=resume,
                       may_change=("eval_episodes", "checkpoint_every", "label", *RAY_MAY_CHANGE),
                       identity={"label": config.label, "env_id": config.env_id, "seed": config.seed,
                                 "n_updates": config.n_updates})
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    ckpt = folder.load_checkpoint()  # before the model loads: a bad folder fails in a second
    policy = build_policy(config)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    # One fused kernel for the whole step on a GPU (on a CPU the default keeps earlier runs' numbers).
    fused = trainable[0].device.type == "cuda"
    optim = torch.optim.Adam(trainable, lr=config.ppo.learning_rate, eps=config.ppo.adam_eps, fused=fused or None)
    if config.compile:
        policy.lm.model.get_decoder().compile(dynamic=True)
    counters = {"updates": 0, "env_steps": 0, "episodes": 0, "wall_s": 0.0}
    if ckpt is not None:
        load_trainable_state(policy, config, ckpt["trainable"])
        optim.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        counters = ckpt["counters"]
    source = rollout_source(config, ckpt)
    log = folder.progress(PROGRESS_COLUMNS, resume_at=counters["env_steps"])
    bar = _bar(config, counters["env_steps"], progress)
    while counters["updates"] < config.n_updates:
        row = _one_update(policy, optim, config, source, counters)
        log.write(row)
        if _checkpoint_due(config, counters["env_steps"]):
            folder.save_checkpoint({"trainable": _plain(trainable_state(policy, config)), "optimizer": optim.state_dict(),
                                    "torch_rng": torch.get_rng_state(), **source.state(),
                                    "counters": dict(counters)}, plain=True, background=True)
        if bar is not None:
            bar.update(config.batch_size)
            bar.set_postfix(success="-" if row["success_rate"] is None else f"{row['success_rate']:.2f}",
                            ent=f"{row['entropy'] or 0:.2f}", sps=f"{row['steps_per_s']:.1f}")
    if bar is not None:
        bar.close()
    log.close()
    source.close()
    files = {"policy": save_policy(policy, config, folder.path), "progress": folder.path / "progress.csv"}
    metrics: dict[str, Any] = {"env_steps": counters["env_steps"], "updates": counters["updates"]}
    if config.eval_episodes > 0:
        results = evaluate_policy(policy, config, folder.path / "eval", progress=progress)
        files["eval"] = folder.path / "eval" / "results.json"
        metrics.update({f"{r.agent}/success_rate": r.summary()["success_rate"] for r in results})
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, files)


def _one_update(policy: Any, optim: torch.optim.Optimizer, config: GLAMConfig, source: Any,
                counters: dict[str, Any]) -> dict[str, Any]:
    """Rollout, GAE and PPO epochs; advances ``counters`` and returns the progress row."""
    t0 = time.perf_counter()
    batch, done, lag = source.next_batch(policy, counters["updates"])
    t1 = time.perf_counter()
    losses = update(policy, optim, config, batch, source.shuffle_rng)
    dt = time.perf_counter() - t0
    counters["updates"] += 1
    counters["env_steps"] += config.batch_size
    counters["wall_s"] += dt
    counters["episodes"] += len(done)
    return {
        **{k: counters[k] for k in ("env_steps", "updates", "episodes", "wall_s")},
        "success_rate": float(np.mean([d[0] for d in done])) if done else None,
        "mean_return": float(np.mean([d[1] for d in done])) if done else None,
        "mean_length": float(np.mean([d[2] for d in done])) if done else None,
        "policy_loss": losses.get("policy"), "value_loss": losses.get("value"),
        "entropy": losses.get("entropy"), "approx_kl": losses.get("approx_kl"),
        "clip_fraction": losses.get("clip_fraction"), "steps_per_s": config.batch_size / dt,
        "rollout_s": t1 - t0, "update_s": dt - (t1 - t0), "policy_lag": lag,
    }


# --------------------------------------------------------------------------- where rollouts run
class LocalRollouts:
    """Rollouts collected by the learner's own policy, the environments here or in Ray env runners
    (``ray.mode = sync``: the same batches either way)."""

    def __init__(self, config: GLAMConfig, ro: Rollouts) -> None:
        self.config, self.ro = config, ro
        if config.ray.enabled:
            from llmrl.scale.env_runners import RayEnvGroup

            ro.envs = RayEnvGroup(ro.envs.local_envs(), config.ray)

    @property
    def shuffle_rng(self) -> np.random.Generator:
        return self.ro.rng  # one stream for actions and minibatches, as in every run before Ray

    def next_batch(self, policy: Any, version: int) -> tuple[dict[str, Any], list[tuple[bool, float, int]], int]:
        batch = collect(policy, self.config, self.ro)
        done, self.ro.finished = self.ro.finished, []
        return batch, done, 0

    def state(self) -> dict[str, Any]:
        return {"rollouts": pickle.dumps(self.ro)}

    def close(self) -> None:
        self.ro.envs.close()


class _RolloutWorker:
    """A Ray actor with a replica of the policy and the environments: collects one rollout with
    the weights it is sent."""

    def __init__(self, config: GLAMConfig, rollouts: bytes) -> None:
        self.config = config
        self.policy = build_policy(config)
        self.policy.eval()
        self.ro: Rollouts = pickle.loads(rollouts)

    def collect(self, weights: dict[str, torch.Tensor], version: int) -> tuple[dict[str, Any], list[Any], int]:
        load_trainable_state(self.policy, self.config, weights)
        batch = collect(self.policy, self.config, self.ro)
        done, self.ro.finished = self.ro.finished, []
        return batch, done, version

    def rollouts(self) -> bytes:
        return pickle.dumps(self.ro)


class AsyncRollouts:
    """``ray.mode = async``: a policy replica in a Ray actor collects the next rollout while the
    learner updates on the last one (one-step off-policy, as verl's and OpenRLHF's async modes):
    the batch an update trains on was collected one policy version back, which PPO's clipped
    ratio against the recorded behaviour log-probs allows for. The lag is logged per update.

    Deterministic all the same (which rollout pairs with which update is fixed, not timed), and
    resumable: a checkpoint waits for the rollout in flight and stores it with the worker's
    environments.
    """

    def __init__(self, config: GLAMConfig, ro: Rollouts, ready: Any = None,
                 shuffle_rng: np.random.Generator | None = None) -> None:
        from llmrl.scale import connect

        self.config = config
        self.ray = connect(config.ray)
        worker = self.ray.remote(num_cpus=config.ray.lm_num_cpus, num_gpus=config.ray.lm_num_gpus)(_RolloutWorker)
        self.worker = worker.remote(config, pickle.dumps(ro))
        self.ready, self.pending = ready, None
        self.shuffle_rng = shuffle_rng if shuffle_rng is not None else rng(config.seed, 2)

    def next_batch(self, policy: Any, version: int) -> tuple[dict[str, Any], list[tuple[bool, float, int]], int]:
        if self.ready is None:
            if self.pending is None:
                self.pending = self.worker.collect.remote(_plain(trainable_state(policy, self.config)), version)
            self.ready = self.ray.get(self.pending)
        batch, done, behaviour = self.ready
        # The next rollout starts now, with the weights the coming update is about to change.
        self.ready = None
        self.pending = self.worker.collect.remote(_plain(trainable_state(policy, self.config)), version)
        return batch, done, version - behaviour

    def state(self) -> dict[str, Any]:
        if self.pending is not None:
            self.ready, self.pending = self.ray.get(self.pending), None
        return {"rollouts": self.ray.get(self.worker.rollouts.remote()), "async_ready": pickle.dumps(self.ready),
                "shuffle_rng": pickle.dumps(self.shuffle_rng)}

    def close(self) -> None:
        self.ray.kill(self.worker)


def rollout_source(config: GLAMConfig, ckpt: dict[str, Any] | None) -> LocalRollouts | AsyncRollouts:
    """Where the run's rollouts come from, restored from ``ckpt`` when resuming (checkpoints are
    the user's own files, see llmrl.runs)."""
    if ckpt is None:
        ro = start_rollouts(config)
    else:
        ro = pickle.loads(ckpt["rollouts"])
        if isinstance(ro.envs, list):  # checkpoints from before EnvGroup held a plain list
            ro.envs = EnvGroup(ro.envs)
    if config.ray.enabled and config.ray.mode == "async":
        ready = pickle.loads(ckpt["async_ready"]) if ckpt is not None and "async_ready" in ckpt else None
        shuffle = pickle.loads(ckpt["shuffle_rng"]) if ckpt is not None and "shuffle_rng" in ckpt else None
        return AsyncRollouts(config, ro, ready, shuffle)
    return LocalRollouts(config, ro)


def _checkpoint_due(config: GLAMConfig, env_steps: int) -> bool:
    """After the update that crossed a multiple of ``checkpoint_every`` env steps, and after the last."""
    before = env_steps - config.batch_size
    return env_steps // config.checkpoint_every > before // config.checkpoint_every or env_steps >= (
        config.n_updates * config.batch_size)


def _bar(config: GLAMConfig, initial: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=config.n_updates * config.batch_size, initial=initial, unit="step", dynamic_ncols=True,
                desc=f"glam {config.env_id}")


EVAL_MODES = (("sampled", False, False), ("greedy", True, False), ("greedy-lb", True, True))
"""(suffix, greedy, break_loops): GLAM evaluates by sampling from π; greedy takes the most likely
action; greedy-lb is greedy with the loop-breaking rule of :class:`llmrl.roles.policy.LLMPolicyAgent`
(a prompt met for the third time in an episode gets a sampled action)."""


def evaluate_policy(policy: Any, config: GLAMConfig, out_dir: Path, progress: bool = True,
                    env_ids: tuple[str, ...] | None = None) -> list[Any]:
    """Sampled, greedy and loop-breaking greedy evaluation of the trained policy on held-out
    levels (``eval_seed``); agents are named ``{label}-{mode}``."""
    from tqdm import tqdm

    from llmrl.evaluation import evaluate, write_results

    out_dir.mkdir(parents=True, exist_ok=True)
    lm = cached_policy_lm(policy, config, out_dir / "scores.sqlite")
    results = []
    for env_id in env_ids or (config.env_id,):
        for mode, _, _ in EVAL_MODES:
            agent = policy_agent(lm, config, mode)
            with tqdm(total=config.eval_episodes, disable=not progress, desc=f"eval {agent.name}", unit="ep") as bar:
                res = evaluate(agent, lambda env_id=env_id: make_level(config, env_id), config.eval_episodes,
                               n_envs=config.n_envs, seed=config.eval_seed, env_id=env_id,
                               progress=lambda k: bar.update(k - bar.n))
            results.append(res)
            write_results(results, out_dir, {"recipe": RECIPE, "config": to_dict(config)})
    return results


def policy_agent(lm: Any, config: GLAMConfig, mode: str = "sampled", actions: tuple[str, ...] | None = None,
                 seed: int | None = None) -> Any:
    """The trained policy's LM as an llmrl agent in one of ``EVAL_MODES``, with the run's prompt."""
    from llmrl.roles.policy import LLMPolicyAgent

    modes = {m: (greedy, lb) for m, greedy, lb in EVAL_MODES}
    if mode not in modes:
        raise ValueError(f"mode must be one of {list(modes)}, got {mode!r}")
    greedy, break_loops = modes[mode]
    return LLMPolicyAgent(lm, actions or config.actions, greedy=greedy, normalise_length=config.normalise_length,
                          n_observations=config.n_observations, seed=config.seed if seed is None else seed,
                          name=f"{config.label}-{mode}", prompt_style=config.prompt_style, break_loops=break_loops)
