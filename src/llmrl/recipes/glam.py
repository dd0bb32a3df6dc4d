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

import csv
import hashlib
import json
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from llmrl.envs.babyai_text import ACTIONS
from llmrl.rl.ppo import gae, ppo_losses
from llmrl.runs import PROGRESS_COLUMNS as RUN_COLUMNS
from llmrl.runs import atomic_torch_save

# The shared run-folder columns, plus where each update's time went.
PROGRESS_COLUMNS = (*RUN_COLUMNS, "rollout_s", "update_s")


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
    total_env_steps: int = 400_000
    """Environment steps over all environments; rounded down to whole updates."""
    n_envs: int = 32
    n_steps: int = 40
    """Steps per environment per update (GLAM: 32 envs x 40 = 1,280 transitions)."""
    n_epochs: int = 4
    minibatch_size: int = 64
    micro_batch_size: int = 16
    """Distinct prompts per forward/backward; gradients accumulate over a minibatch."""
    finetune: str = "lora"
    """lora (peft adapters on the attention projections) or full."""
    lora_r: int = 8
    lora_alpha: int = 16
    learning_rate: float = 1e-6
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.99
    clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 20.0
    """GLAM multiplies the environment reward by 20 for training."""
    n_observations: int = 3
    """Observations kept in the prompt (GLAM: 3, with the 2 actions between them)."""
    actions: tuple[str, ...] = ACTIONS
    normalise_length: bool = False
    """Score actions by mean instead of summed token log-probability."""
    checkpoint_every: int = 1
    """Updates between checkpoints (a killed run loses at most this many)."""
    eval_episodes: int = 100
    eval_seed: int = 100_000
    """Evaluation episode k is reset with eval_seed + k (disjoint from training levels)."""
    threads: int = 0
    """torch threads; 0 keeps torch's default."""
    label: str = "glam"
    """Series name in plots: runs with the same label and env_id are seeds of one series."""

    def __post_init__(self) -> None:
        self.actions = tuple(self.actions)
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.minibatch_size % self.micro_batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )
        if self.batch_size < self.minibatch_size:
            raise ValueError(
                f"n_envs * n_steps = {self.batch_size} transitions per update is less than "
                f"minibatch_size = {self.minibatch_size}: raise n_steps or lower minibatch_size"
            )
        if self.total_env_steps < self.batch_size:
            raise ValueError(
                f"total_env_steps = {self.total_env_steps} is less than one update "
                f"(n_envs * n_steps = {self.batch_size})"
            )

    @property
    def batch_size(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def n_updates(self) -> int:
        return self.total_env_steps // self.batch_size


PRESETS: dict[str, GLAMConfig] = {
    # GLAM's hyper-parameters and scale (its GoToLocal ablations: 400k steps), for a GPU. GLAM
    # fine-tunes the whole Flan-T5 at lr 1e-6; with LoRA (the default here) use ~1e-4.
    "paper": GLAMConfig(
        env_id="BabyAI-Text-GoToLocal-v0", total_env_steps=400_000, n_envs=32, n_steps=40,
        n_epochs=4, minibatch_size=64, micro_batch_size=64, finetune="full", learning_rate=1e-6,
        label="glam-paper",
    ),
    # About 30 minutes on 2 CPU cores (docs/results/glam.md): GoToLocal's 5x5 room with 2 distractors (zero-shot
    # gemma-3-270m: greedy 0%, sampled ~12%), one observation in the prompt (a third of the tokens),
    # one epoch (the update costs ~3x the rollout), and LoRA's larger learning rate.
    "cpu": GLAMConfig(
        env_id="BabyAI-Text-GoToLocalS5N2-v0", total_env_steps=8_192, n_envs=16, n_steps=32,
        n_epochs=1, minibatch_size=64, micro_batch_size=16, finetune="lora", learning_rate=2e-4,
        n_observations=1, checkpoint_every=1, label="glam-cpu",
    ),
}


def config_from(preset: str = "cpu", **overrides: Any) -> GLAMConfig:
    """A preset with some fields replaced; unknown names are errors that list the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown GLAM preset {preset!r}: choose from {', '.join(PRESETS)}")
    names = {f.name for f in fields(GLAMConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown GLAMConfig field(s) {', '.join(bad)}: valid are {', '.join(sorted(names))}")
    return replace(PRESETS[preset], **overrides)


# --------------------------------------------------------------------------- the policy
def build_policy(config: GLAMConfig) -> Any:
    """The LM (``config.model``) wrapped as an actor-critic with LoRA or full fine-tuning."""
    from peft import LoraConfig

    from llmrl.lm import load_model
    from llmrl.roles.policy import LMActorCritic

    torch.manual_seed(config.seed)  # the value head's and adapters' initial weights
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = load_model(config.model, dtype=config.dtype, device=device)
    lora = None
    if config.finetune == "lora":
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
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


def trained_weights(run_dir: str | os.PathLike[str]) -> Path:
    """The file holding a run's trained weights: its final ``policy/`` or else its latest checkpoint."""
    run = Path(run_dir)
    for path in (run / "policy" / "weights.pt", run / "checkpoints" / "latest.pt"):
        if path.exists():
            return path
    raise FileNotFoundError(
        f"{run} has neither policy/weights.pt nor checkpoints/latest.pt: "
        "is it a `llmrl train glam` run folder that ran at least one update?"
    )


def load_trained_policy(run_dir: str | os.PathLike[str]) -> tuple[Any, GLAMConfig]:
    """A trained policy from a run folder (see :func:`trained_weights`), ready to evaluate."""
    config = read_config(Path(run_dir))
    state = torch.load(trained_weights(run_dir), map_location="cpu", weights_only=False)
    state = state.get("trainable", state)
    policy = build_policy(config)
    load_trainable_state(policy, config, state)
    policy.eval()
    return policy, config


def read_config(run: Path) -> GLAMConfig:
    path = run / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass a run folder written by `llmrl train glam`")
    data = json.loads(path.read_text())
    names = {f.name for f in fields(GLAMConfig)}
    return GLAMConfig(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------- the rollout state
@dataclass
class Rollouts:
    """The environments between updates: what a checkpoint must hold to resume mid-run."""

    envs: list[gym.Env]
    infos: list[dict[str, Any]]
    histories: list[Any]  # PromptHistory per environment
    ep_return: list[float]
    ep_length: list[int]
    rng: np.random.Generator  # action sampling and minibatch shuffles
    finished: list[tuple[bool, float, int]] = field(default_factory=list)  # (success, return, length)


def start_rollouts(config: GLAMConfig) -> Rollouts:
    import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
    from llmrl.roles.policy import PromptHistory

    envs = [gym.make(config.env_id) for _ in range(config.n_envs)]
    infos = []
    for i, env in enumerate(envs):
        # Seed each environment once; later resets continue its own generator.
        _, info = env.reset(seed=config.seed * 10_000 + i)
        infos.append(info)
    histories = [PromptHistory(config.actions, config.n_observations) for _ in envs]
    return Rollouts(envs, infos, histories, [0.0] * len(envs), [0] * len(envs),
                    np.random.default_rng([config.seed, 1]))


def collect(policy: Any, config: GLAMConfig, ro: Rollouts) -> dict[str, Any]:
    """Step every environment ``n_steps`` times with the current policy; return the batch."""
    T, N = config.n_steps, config.n_envs
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
            for i, env in enumerate(ro.envs):
                ro.histories[i].record(config.actions[a[i]])
                _, r, terminated, truncated, info = env.step(int(a[i]))
                ro.ep_return[i] += float(r)
                ro.ep_length[i] += 1
                rewards[t, i] = float(r) * config.reward_scale
                # A time-out also ends the value target here, as in GLAM (no bootstrap past it).
                if terminated or truncated:
                    dones[t, i] = 1.0
                    ro.finished.append((bool(info.get("success", r > 0)), ro.ep_return[i], ro.ep_length[i]))
                    ro.ep_return[i], ro.ep_length[i] = 0.0, 0
                    ro.histories[i].reset()
                    _, info = env.reset()
                ro.infos[i] = info
        # V of the prompts that follow the rollout, to bootstrap unfinished episodes.
        next_prompts = [h.preview(info["mission"], info["descriptions"]) for h, info in zip(ro.histories, ro.infos)]
        _, last_value = act_values(next_prompts)
    advantages, returns = gae(rewards, values, dones, last_value, config.gamma, config.gae_lambda)
    flat = [p for step in prompts for p in step]
    return {
        "prompts": flat, "actions": actions.flatten(), "logp": logps.flatten(),
        "values": values.flatten(), "advantages": advantages.flatten(), "returns": returns.flatten(),
    }


def update(policy: Any, optim: torch.optim.Optimizer, config: GLAMConfig, batch: dict[str, Any],
           rng: np.random.Generator) -> dict[str, float]:
    """PPO epochs over the batch; returns the mean of each loss term."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    n = len(batch["prompts"])
    sums: dict[str, float] = {}
    n_minibatches = 0
    policy.train()
    for _ in range(config.n_epochs):
        order = rng.permutation(n)
        for start in range(0, n - config.minibatch_size + 1, config.minibatch_size):
            mb = order[start : start + config.minibatch_size]
            adv = batch["advantages"][mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)  # per minibatch, as in PPO2 / GLAM
            # Each distinct prompt is forwarded once; its samples share the result (same loss,
            # fewer forward/backward passes when views repeat).
            prompts = [batch["prompts"][j] for j in mb]
            unique = list(dict.fromkeys(prompts))
            slot = {p: k for k, p in enumerate(unique)}
            owner = np.array([slot[p] for p in prompts])
            optim.zero_grad(set_to_none=True)
            for m in range(0, len(unique), config.micro_batch_size):
                sel = np.nonzero((owner >= m) & (owner < m + config.micro_batch_size))[0]
                idx = mb[sel]
                logp_all, v = policy(unique[m : m + config.micro_batch_size])
                rows = torch.from_numpy(owner[sel] - m).to(v.device)
                on = {k: batch[k][idx].to(v.device) for k in ("actions", "logp", "values", "returns")}
                out = ppo_losses(
                    logp_all[rows], on["actions"], on["logp"], adv[sel].to(v.device), v[rows],
                    on["values"], on["returns"],
                    clip=config.clip, value_coef=config.value_coef, entropy_coef=config.entropy_coef,
                    normalise_advantages=False,
                )
                (out.total * len(sel) / len(mb)).backward()
                for k in ("policy", "value", "entropy", "approx_kl", "clip_fraction"):
                    sums[k] = sums.get(k, 0.0) + float(getattr(out, k).detach()) * len(sel) / len(mb)
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optim.step()
            n_minibatches += 1
    policy.eval()
    return {k: v / max(n_minibatches, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, **state: Any) -> None:
    atomic_torch_save(path, state, pickle_protocol=pickle.HIGHEST_PROTOCOL)


class ProgressLog:
    """progress.csv (one row per update) and TensorBoard, both truncated to a resumed update."""

    def __init__(self, run: Path, resume_update: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run / "progress.csv"
        rows = []
        if resume_update and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["updates"]) <= resume_update]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, PROGRESS_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        # purge_step drops TensorBoard events a killed run wrote after its last checkpoint.
        self.tb = SummaryWriter(str(run / "tb"), purge_step=resume_update + 1 if resume_update else None)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, PROGRESS_COLUMNS).writerow({k: _cell(row.get(k)) for k in PROGRESS_COLUMNS})
        step = row["updates"]
        for k in ("success_rate", "mean_return", "mean_length", "steps_per_s"):
            if row.get(k) is not None:
                self.tb.add_scalar(f"charts/{k}", row[k], step)
        for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
            if row.get(k) is not None:
                self.tb.add_scalar(f"losses/{k}", row[k], step)
        self.tb.add_scalar("charts/env_steps", row["env_steps"], step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def _cell(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.6g}" if isinstance(x, float) else x


# --------------------------------------------------------------------------- the run
def train(
    config: GLAMConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    evaluate_at_end: bool = True,
    on_update: Callable[[int], None] | None = None,
    command: str | None = None,
) -> Path:
    """Train the GLAM policy described by ``config``; everything goes into ``out_dir``.

    With ``resume=True`` and a checkpoint in ``out_dir``, the run continues from it (same config
    required) and reproduces the uninterrupted run's numbers. ``on_update(k)`` is called after
    update k's checkpoint (tests use it to kill a run at a known point).
    """
    from tqdm import tqdm

    run = Path(out_dir)
    ckpt_path = run / "checkpoints" / "latest.pt"
    config_json = {"recipe": "glam", **asdict(config), "n_updates": config.n_updates, "command": command}
    if resume and ckpt_path.exists():
        saved = read_config(run)
        if asdict(saved) != asdict(config):
            diff = [k for k, v in asdict(config).items() if asdict(saved).get(k) != v]
            raise ValueError(
                f"--resume: {run} was started with a different config (fields {', '.join(diff)}); "
                "resume with the same settings or use a new --out folder"
            )
    elif (run / "progress.csv").exists() and not resume:
        raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or choose a new --out")
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config_json, indent=2, default=list) + "\n")

    if config.threads:
        torch.set_num_threads(config.threads)
    policy = build_policy(config)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.Adam(trainable, lr=config.learning_rate, eps=config.adam_eps)
    counters = {"updates": 0, "env_steps": 0, "episodes": 0, "wall_s": 0.0}
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        load_trainable_state(policy, config, ckpt["trainable"])
        optim.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        ro: Rollouts = pickle.loads(ckpt["rollouts"])
        counters = ckpt["counters"]
    else:
        ro = start_rollouts(config)
    log = ProgressLog(run, counters["updates"])

    bar = tqdm(total=config.n_updates * config.batch_size, initial=counters["env_steps"], unit="step",
               disable=not progress, dynamic_ncols=True, desc=f"glam {config.env_id}")
    while counters["updates"] < config.n_updates:
        t0 = time.perf_counter()
        batch = collect(policy, config, ro)
        t1 = time.perf_counter()
        losses = update(policy, optim, config, batch, ro.rng)
        dt = time.perf_counter() - t0
        counters["updates"] += 1
        counters["env_steps"] += config.batch_size
        counters["wall_s"] += dt
        done, ro.finished = ro.finished, []
        counters["episodes"] += len(done)
        row = {
            **{k: counters[k] for k in ("env_steps", "updates", "episodes", "wall_s")},
            "success_rate": float(np.mean([d[0] for d in done])) if done else None,
            "mean_return": float(np.mean([d[1] for d in done])) if done else None,
            "mean_length": float(np.mean([d[2] for d in done])) if done else None,
            "policy_loss": losses.get("policy"), "value_loss": losses.get("value"),
            "entropy": losses.get("entropy"), "approx_kl": losses.get("approx_kl"),
            "clip_fraction": losses.get("clip_fraction"), "steps_per_s": config.batch_size / dt,
            "rollout_s": t1 - t0, "update_s": dt - (t1 - t0),
        }
        log.write(row)
        if counters["updates"] % config.checkpoint_every == 0 or counters["updates"] == config.n_updates:
            save_checkpoint(
                ckpt_path, trainable=trainable_state(policy, config), optimizer=optim.state_dict(),
                torch_rng=torch.get_rng_state(), rollouts=pickle.dumps(ro), counters=dict(counters),
            )
        bar.update(config.batch_size)
        sr = row["success_rate"]
        bar.set_postfix(success="-" if sr is None else f"{sr:.2f}", ent=f"{losses.get('entropy', 0):.2f}",
                        vloss=f"{losses.get('value', 0):.2f}", sps=f"{row['steps_per_s']:.1f}")
        if on_update is not None:
            on_update(counters["updates"])
    bar.close()
    log.close()
    for env in ro.envs:
        env.close()

    (run / "policy").mkdir(exist_ok=True)
    save_checkpoint(run / "policy" / "weights.pt", **trainable_state(policy, config))
    if evaluate_at_end and config.eval_episodes > 0:
        evaluate_policy(policy, config, run / "eval", progress=progress)
    return run


def evaluate_policy(policy: Any, config: GLAMConfig, out_dir: Path, progress: bool = True,
                    env_ids: tuple[str, ...] | None = None) -> Path:
    """Greedy and sampled evaluation of the trained policy on held-out levels (``eval_seed``)."""
    from tqdm import tqdm

    from llmrl.evaluation import evaluate, write_results
    from llmrl.roles.policy import LLMPolicyAgent

    from llmrl.lm.cache import CachedLM

    # The weights are frozen from here on, and small levels repeat views: score each prompt once.
    digest = hashlib.sha256(b"".join(t.detach().float().cpu().numpy().tobytes()
                                     for t in trainable_state(policy, config).values())).hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = CachedLM(policy.lm, out_dir / "scores.sqlite", model_key=f"{policy.lm.cache_identity}+trained:{digest}")
    results = []
    for env_id in env_ids or (config.env_id,):
        for name, greedy in ((f"{config.label}", True), (f"{config.label}-sampled", False)):
            agent = LLMPolicyAgent(lm, config.actions, greedy=greedy,
                                   normalise_length=config.normalise_length,
                                   n_observations=config.n_observations, seed=config.seed, name=name)
            with tqdm(total=config.eval_episodes, disable=not progress, desc=f"eval {name}", unit="ep") as bar:
                res = evaluate(agent, lambda env_id=env_id: gym.make(env_id), config.eval_episodes,
                               n_envs=config.n_envs, seed=config.eval_seed, env_id=env_id,
                               progress=lambda k: bar.update(k - bar.n))
            results.append(res)
            write_results(results, out_dir, {"recipe": "glam", "config": asdict(config)})
    return out_dir
