"""RLHF: a Bradley–Terry reward model learned from preferences, then PPO with a KL penalty to the
starting policy; and the over-optimisation curve (Gao et al. 2022): proxy and gold reward
against KL.

The task (:mod:`llmrl.envs.reply_task`): the LM says what a robot does first for a BabyAI
mission. A rule-based gold judge plays the human. Per seed:

1. **Preferences.** The starting LM samples two replies to each of ``n_pairs + n_test_pairs``
   training prompts; the gold judge labels each pair as a Bradley–Terry rater with temperature
   ``preference_temperature`` would (noisy, so the best possible accuracy is known).
2. **Reward model.** The same LM with LoRA and a scalar head, trained on ``n_pairs`` pairs;
   held-out accuracy on the other ``n_test_pairs``, beside the rater's own ceiling.
3. **PPO-KL** (:mod:`llmrl.rl.text_ppo`) from the starting LM against the reward model, once
   per KL coefficient in ``kl_coefs``; with ``gold_arm`` also against the gold reward itself (a
   plain function: the reference for what optimising the true reward gives). Every
   ``eval_every`` iterations the policy replies to the held-out prompts and the proxy reward,
   gold reward and exact KL to the start are recorded.

Run folder: ``config.json``; ``preferences/seed<k>.jsonl``; ``reward_models.csv`` (per seed and
epoch); ``rm/seed<k>.pt``; ``ppo/<arm>/progress.csv`` per PPO run (its rollouts and its
held-out evaluations) with ``checkpoint.pt`` (adapters, value head, optimiser, β);
``summary.json``. Every stage resumes: a finished seed or run is skipped, an unfinished PPO
run goes on from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs import reply_task
from llmrl.rl.text_ppo import KLPPOConfig
from llmrl.runs import (
    ProgressLog,
    RunFolder,
    RunResult,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    read_rows,
)
from llmrl.scale import RayConfig
from llmrl.stats import t_interval
from llmrl.workers import run_jobs

RECIPE = "rlhf"
RM_COLUMNS = ("seed", "epoch", "loss", "train_accuracy", "test_accuracy", "gold_order_accuracy", "rater_ceiling",
              "seconds")  # fmt: skip
PPO_COLUMNS = ("iteration", "phase", "kl", "kl_sampled", "proxy", "gold", "kl_coef", "response_tokens", "policy_loss",
               "value_loss", "entropy", "approx_kl", "clip_fraction", "seconds")  # fmt: skip


@dataclass
class RLHFConfig:
    """RLHF's settings; every field lands in the run's ``config.json``."""

    model: str = "smollm2-135m-instruct"
    """the policy and the reward model's backbone (a local transformers model)"""
    dtype: str = "fp32"
    seeds: int = 3
    """seeds 0..seeds-1: each draws its own preferences, reward model and PPO runs"""
    n_pairs: int = 128
    """preference pairs the reward model trains on"""
    n_test_pairs: int = 32
    """held-out pairs for its accuracy"""
    preference_temperature: float = 0.5
    """the simulated rater's noise: P(a preferred) = σ((gold(a) − gold(b)) / temperature)"""
    rm_epochs: int = 2
    rm_batch_size: int = 16
    rm_learning_rate: float = 1e-4
    kl_coefs: tuple[float, ...] = (0.0, 0.05, 0.2)
    """β of each PPO run against the reward model"""
    gold_arm: bool = True
    """also run PPO on the gold reward (at the middle β): what optimising the true reward gives"""
    iterations: int = 16
    """PPO iterations per run (``text_ppo.batch_size`` responses each)"""
    text_ppo: KLPPOConfig = field(default_factory=lambda: KLPPOConfig(batch_size=8))
    eval_every: int = 4
    """iterations between held-out evaluations (and checkpoints)"""
    eval_samples: int = 1
    """replies per held-out prompt at each evaluation"""
    workers: int = 2
    """reward models and PPO runs side by side (llmrl.workers, one torch thread each)"""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out: the reward models and PPO runs on ``workers`` Ray actors"""
    label: str = RECIPE

    def __post_init__(self) -> None:
        require_positive(self, "seeds", "n_pairs", "n_test_pairs", "preference_temperature", "rm_epochs",
                         "rm_batch_size", "rm_learning_rate", "iterations", "eval_every", "eval_samples", "workers")  # fmt: skip
        self.kl_coefs = tuple(float(b) for b in self.kl_coefs)
        if not self.kl_coefs or any(b < 0 for b in self.kl_coefs):
            raise ValueError(f"kl_coefs must be one or more values >= 0, got {self.kl_coefs}")
        if self.model.startswith(("openai:", "llamacpp:")):
            raise ValueError("RLHF trains the model: give a local transformers model (gemma-3-270m, "
                             "smollm2-135m-instruct or a folder), not a server")  # fmt: skip
        if self.ray.mode != "sync":
            raise ValueError("ray.mode must be sync: the runs are independent jobs")


Config = RLHFConfig

PRESETS: dict[str, RLHFConfig] = {
    "cpu": RLHFConfig(),
    # InstructGPT's shape at a laptop's scale is all we can run; "paper" keeps the loop and grows the budgets.
    "paper": RLHFConfig(model="gemma-3-270m", n_pairs=2000, n_test_pairs=500, rm_epochs=1, iterations=200,
                        kl_coefs=(0.0, 0.01, 0.05, 0.2), text_ppo=KLPPOConfig(batch_size=64), eval_every=20),
    "smoke": RLHFConfig(seeds=1, n_pairs=8, n_test_pairs=4, rm_epochs=1, rm_batch_size=4, kl_coefs=(0.05,),
                        gold_arm=False, iterations=2, text_ppo=KLPPOConfig(batch_size=4, max_new_tokens=4),
                        eval_every=1, eval_samples=1, workers=1),
}

_RESUMABLE = ("workers", "ray", "label", "iterations")  # a finished run can be extended


def config_from(preset: str = "cpu", **overrides: Any) -> RLHFConfig:
    return _config_from(PRESETS, preset, overrides)


def _arms(config: RLHFConfig) -> list[tuple[str, float]]:
    arms = [("model", b) for b in config.kl_coefs]
    if config.gold_arm:
        arms.append(("gold", config.kl_coefs[len(config.kl_coefs) // 2]))
    return arms


def arm_name(reward: str, kl_coef: float, seed: int) -> str:
    return f"{reward}-beta{kl_coef:g}-seed{seed}"


# --- stage 1 and 2: preferences and the reward model ----------------------------------------------


def _load_lm(config: RLHFConfig) -> Any:
    from llmrl.lm import load_model

    return load_model(config.model, dtype=config.dtype)


def reward_model_job(config_json: str, out: str, seed: int) -> dict[str, Any]:
    """Preferences over the starting LM's replies, then the reward model; returns its epochs."""
    import torch

    from llmrl.config import from_dict
    from llmrl.rl.preference import Preference, RewardModel, accuracy, sample_preferences, train_reward_model

    config = from_dict(RLHFConfig, json.loads(config_json))
    start = time.perf_counter()
    torch.manual_seed(seed)
    folder = Path(out)
    lm = _load_lm(config)
    train_prompts, _ = reply_task.split_prompts(seed)
    rng = np.random.default_rng(seed)
    n = config.n_pairs + config.n_test_pairs
    prompts = [train_prompts[i] for i in rng.integers(len(train_prompts), size=n)]
    replies = []
    for i in range(0, 2 * n, 16):  # both replies of every prompt, in batches of 16
        batch = (prompts + prompts)[i : i + 16]
        ids = lm.sample_ids(batch, config.text_ppo.max_new_tokens, config.text_ppo.temperature, seed=seed * 100_000 + i)
        replies += [lm.tokenizer.decode(r, skip_special_tokens=True) for r in ids]
    first, second = replies[:n], replies[n:]
    pairs = sample_preferences(prompts, first, second, reply_task.gold_reward, rng, config.preference_temperature)
    gold = {id(p): (float(reply_task.gold_reward([p.prompt], [p.chosen])[0]),
                    float(reply_task.gold_reward([p.prompt], [p.rejected])[0])) for p in pairs}  # fmt: skip
    (folder / "preferences").mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "preferences" / f"seed{seed}.jsonl", "".join(
        json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "gold_chosen": gold[id(p)][0],
                    "gold_rejected": gold[id(p)][1], "split": "train" if k < len(pairs) - config.n_test_pairs else "test"})
        + "\n" for k, p in enumerate(pairs)))  # fmt: skip
    test = pairs[-config.n_test_pairs:]
    train = pairs[: -config.n_test_pairs]
    # The rater's ceiling: a judge that always picks the gold-better reply agrees with the noisy label this often.
    q = np.array([1 / (1 + math.exp(-(gold[id(p)][0] - gold[id(p)][1]) / config.preference_temperature)) for p in test])
    ceiling = float(np.mean(q))  # the label is "chosen" = gold-better with probability q when gold differs
    gold_better = [Preference(p.prompt, *((p.chosen, p.rejected) if gold[id(p)][0] >= gold[id(p)][1] else
                                          (p.rejected, p.chosen))) for p in test if gold[id(p)][0] != gold[id(p)][1]]  # fmt: skip
    rm = RewardModel(lm)
    history = train_reward_model(rm, train, test, epochs=config.rm_epochs, batch_size=config.rm_batch_size,
                                 learning_rate=config.rm_learning_rate, seed=seed)  # fmt: skip
    (folder / "rm").mkdir(exist_ok=True)
    atomic_torch_save(folder / "rm" / f"seed{seed}.pt", rm.state())
    gold_order = accuracy(rm, gold_better)
    return {"seed": seed, "history": history, "gold_order_accuracy": gold_order, "rater_ceiling": ceiling,
            "seconds": time.perf_counter() - start}  # fmt: skip


# --- stage 3: PPO-KL -------------------------------------------------------------------------------


def ppo_job(config_json: str, out: str, reward: str, kl_coef: float, seed: int) -> dict[str, Any]:
    """One PPO-KL run from the starting LM against the seed's reward model (or the gold reward)."""
    import torch

    from llmrl.config import from_dict
    from llmrl.rl.preference import RewardModel
    from llmrl.rl.text_ppo import TextPolicy, adapt_kl_coef, rollout, update

    config = from_dict(RLHFConfig, json.loads(config_json))
    folder = Path(out) / "ppo" / arm_name(reward, kl_coef, seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rm = RewardModel(_load_lm(config))
    rm.load_state_dict({**rm.state_dict(), **torch.load(Path(out) / "rm" / f"seed{seed}.pt")})
    rm.eval()
    policy = TextPolicy(_load_lm(config))
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.text_ppo.ppo.learning_rate, eps=config.text_ppo.ppo.adam_eps)
    beta, first = kl_coef, 0
    rng = np.random.default_rng((seed, 0))  # the training prompts' draws
    ckpt = folder / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        policy.load_trainable_state(state["policy"])
        opt.load_state_dict(state["optimiser"])
        beta, first = state["kl_coef"], state["iteration"]
        if "prompt_rng" in state:  # the draws go on where they stopped
            rng.bit_generator.state = state["prompt_rng"]
        else:  # a checkpoint from before the draws were kept: draw afresh
            rng = np.random.default_rng((seed, first))
    log = ProgressLog(folder / "progress.csv", PPO_COLUMNS, key="iteration", resume_at=first)

    def proxy(prompts, texts):
        return rm(prompts, texts)

    pay = proxy if reward == "model" else reply_task.gold_reward
    train_prompts, test_prompts = reply_task.split_prompts(seed)

    def evaluate(iteration: int) -> None:
        t = time.perf_counter()
        prompts = test_prompts * config.eval_samples
        b = rollout(policy, prompts, proxy, config.text_ppo, beta, seed=10_000_000 + iteration)
        log.write({"iteration": iteration, "phase": "eval", "kl": b.kl.mean(), "kl_sampled": b.kl_sampled.mean(),
                   "proxy": b.scores.mean(), "gold": reply_task.gold_reward(prompts, b.texts).mean(), "kl_coef": beta,
                   "response_tokens": np.mean([len(r) for r in b.responses]), "seconds": time.perf_counter() - t})  # fmt: skip

    if first == 0:
        evaluate(0)
    for it in range(first, config.iterations):
        t = time.perf_counter()
        prompts = [train_prompts[i] for i in rng.integers(len(train_prompts), size=config.text_ppo.batch_size)]
        b = rollout(policy, prompts, pay, config.text_ppo, beta, seed=seed * 1_000_003 + it)
        losses = update(policy, opt, b, config.text_ppo, seed=seed * 1_000_003 + it)
        gold = reply_task.gold_reward(prompts, b.texts)
        log.write({"iteration": it + 1, "phase": "train", "kl": b.kl.mean(), "kl_sampled": b.kl_sampled.mean(),
                   "proxy": (b.scores if reward == "model" else proxy(prompts, b.texts)).mean(), "gold": gold.mean(),
                   "kl_coef": beta, "response_tokens": np.mean([len(r) for r in b.responses]), **losses,
                   "seconds": time.perf_counter() - t})  # fmt: skip
        beta = adapt_kl_coef(beta, float(b.kl.mean()), config.text_ppo)
        if (it + 1) % config.eval_every == 0 or it + 1 == config.iterations:
            evaluate(it + 1)
            atomic_torch_save(ckpt, {"policy": policy.trainable_state(), "optimiser": opt.state_dict(),
                                     "kl_coef": beta, "iteration": it + 1,
                                     "prompt_rng": rng.bit_generator.state})  # fmt: skip
    log.close()
    return {"reward": reward, "kl_coef": kl_coef, "seed": seed}


# --- the run ---------------------------------------------------------------------------------------


def run(config: RLHFConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Preferences, reward models, then every PPO-KL run; the summary tables."""
    from llmrl.config import to_dict

    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"model": config.model, "label": config.label})
    config_json = json.dumps(to_dict(config))
    rm_path = folder.path / "reward_models.csv"
    rm_rows = read_rows(rm_path, "seed") if folder.resumed else []
    done = {int(r["seed"]) for r in rm_rows}
    seeds = [s for s in range(config.seeds) if s not in done]
    rm_log = ProgressLog(rm_path, RM_COLUMNS, key="seed", resume_at=math.inf)
    for _, res in run_jobs(reward_model_job, [(config_json, str(folder.path), s) for s in seeds], config.workers,
                           cluster=config.ray):  # fmt: skip
        for h in res["history"]:
            row = {"seed": res["seed"], **h, "gold_order_accuracy": res["gold_order_accuracy"],
                   "rater_ceiling": res["rater_ceiling"], "seconds": res["seconds"]}  # fmt: skip
            rm_log.write(row)
            rm_rows.append({k: str(v) for k, v in row.items()})
        if progress:
            print(f"[{config.label}] reward model seed {res['seed']}: held-out accuracy "
                  f"{res['history'][-1]['test_accuracy']:.2f} (rater ceiling {res['rater_ceiling']:.2f})", flush=True)
    rm_log.close()

    def finished(reward: str, b: float, s: int) -> bool:
        rows = read_rows(folder.path / "ppo" / arm_name(reward, b, s) / "progress.csv", "iteration")
        return any(int(r["iteration"]) == config.iterations and r["phase"] == "eval" for r in rows)

    todo = [(reward, b, s) for s in range(config.seeds) for reward, b in _arms(config) if not finished(reward, b, s)]
    jobs = [(config_json, str(folder.path), reward, b, s) for reward, b, s in todo]
    for i, _ in run_jobs(ppo_job, jobs, config.workers, cluster=config.ray):
        if progress:
            print(f"[{config.label}] PPO {arm_name(*todo[i])} done", flush=True)

    summary = summarise(folder.path, config)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {"rm_test_accuracy": summary["reward_model"]["test_accuracy"]["mean"]}
    for arm, by in summary["ppo"].items():
        metrics[f"{arm}/gold"] = by["final"]["gold"]["mean"]
        metrics[f"{arm}/kl"] = by["final"]["kl"]["mean"]
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"reward_models": rm_path, "summary": folder.path / "summary.json"})


def _interval(values: list[float]) -> dict[str, Any]:
    mean, lo, hi = t_interval(values)
    return {"mean": mean, "ci95": [lo, hi], "n": len(values)}


def summarise(path: Path, config: RLHFConfig) -> dict[str, Any]:
    """The reward models' last-epoch accuracies, and per PPO arm the held-out proxy, gold and KL at
    every evaluation (mean and 95% interval over seeds)."""
    rows = [r for r in read_rows(path / "reward_models.csv", "seed") if int(r["epoch"]) == config.rm_epochs]
    out: dict[str, Any] = {"reward_model": {k: _interval([float(r[k]) for r in rows])
                                            for k in ("test_accuracy", "gold_order_accuracy", "rater_ceiling")},
                           "ppo": {}}  # fmt: skip
    for reward, b in _arms(config):
        curves: dict[int, dict[str, list[float]]] = {}
        for s in range(config.seeds):
            for r in read_rows(path / "ppo" / arm_name(reward, b, s) / "progress.csv", "iteration"):
                if r["phase"] == "eval":
                    c = curves.setdefault(int(r["iteration"]), {"kl": [], "proxy": [], "gold": []})
                    for k in c:
                        c[k].append(float(r[k]))
        if not curves:
            continue
        table = {it: {k: _interval(v) for k, v in c.items()} for it, c in sorted(curves.items())}
        out["ppo"][f"{reward}-beta{b:g}"] = {"curve": table, "final": table[max(table)]}
    return out

