"""The LM as imagination: ground it in states and actions, then let it write rollouts (KALM).

KALM (Pang et al. 2024) fine-tunes an LM on real (goal, rollout) pairs with four tasks, then asks
it for rollouts of goals it has never seen; offline RL trains on real plus imagined data.

1. **tasks** (:func:`kalm_sequences`): each episode gives one sequence per task --
   0 rollout generation (goal -> s0 a0 s1 ... sT), 1 dynamics (s, a -> s'), 2 terminal state
   (s0 + goal -> sT), 3 rollout explanation (s0 a0 ... sT -> goal). Numbers enter and leave the LM
   through adapters (:mod:`llmrl.lm.numeric`); the prompts are our wording of KALM's.
2. **grounding** (:func:`ground`): AdamW on 0.5 MSE_state + 0.5 CE_action + CE_text, LoRA or full,
   with atomic checkpoints, resume and a progress CSV.
3. **imagination** (:func:`imagine`): greedy decoding from the rollout-generation prompt and a real
   s0: the argmax action, then the regressed next state, alternately, until a stop predicate holds
   on a generated state or ``max_steps``. Batched, with a KV cache.

An episode is a plain dict: ``observations`` (T+1, state_dim) float32, ``actions`` (T,) int64 and
``goal`` (str).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrl.lm.hf import kv_cache_kwargs, returned_cache
from llmrl.lm.lora import default_lora
from llmrl.lm.numeric import Action, GroundedLM, Segments, State, Text

Episode = dict[str, Any]
StopFn = Callable[[int, np.ndarray, np.ndarray], bool]

TASKS = {0: "rollout generation", 1: "dynamics prediction", 2: "terminal-state prediction",
         3: "rollout explanation"}


# --------------------------------------------------------------------------- the four tasks
def rollout_prompt(goal: str, s0: np.ndarray) -> Segments:
    """Task 0's prompt up to and including the real initial state (input only)."""
    return [Text(f"Write the state/action trajectory that carries out the instruction.\n"
                 f"Instruction: {goal}\nTrajectory:"), State(s0)]


def rollout_generation(ep: Episode) -> Segments:
    """Task 0: goal -> s0 a0 s1 a1 ... sT; every a_t and s_{t+1} is a target."""
    obs, acts = ep["observations"], ep["actions"]
    seq = rollout_prompt(ep["goal"], obs[0])
    for t, a in enumerate(acts):
        seq += [Action(int(a), target=True), State(obs[t + 1], target=True)]
    return seq


def dynamics_prediction(ep: Episode, t: int) -> Segments:
    """Task 1: one step, s_t and a_t -> s_{t+1} (the target)."""
    obs = ep["observations"]
    return [Text("Predict the state after an action.\nState:"), State(obs[t]), Text(" Action:"),
            Action(int(ep["actions"][t])), Text(" Next state:"), State(obs[t + 1], target=True)]


def terminal_state_prediction(ep: Episode) -> Segments:
    """Task 2: s0 and the goal -> s_T (the target)."""
    obs = ep["observations"]
    return [Text("Initial state:"), State(obs[0]),
            Text(f' After following the instruction "{ep["goal"]}", the final state is:'),
            State(obs[-1], target=True)]


def explanation_prompt(ep: Episode) -> Segments:
    """Task 3's prompt: the whole rollout, then where the instruction goes."""
    obs, acts = ep["observations"], ep["actions"]
    seq: Segments = [Text("Write the instruction that this state/action trajectory carries out.\nTrajectory:"),
                     State(obs[0])]
    for t, a in enumerate(acts):
        seq += [Action(int(a)), State(obs[t + 1])]
    return seq + [Text("\nInstruction:")]


def rollout_explanation(ep: Episode) -> Segments:
    """Task 3: s0 a0 ... sT -> the goal; the goal's tokens (and the newline ending it) are targets."""
    return explanation_prompt(ep) + [Text(f" {ep['goal']}\n", target=True)]


def kalm_sequences(
    episodes: Iterable[Episode], tasks: Sequence[int] = (0, 1, 2, 3), rng: np.random.Generator | None = None
) -> list[Segments]:
    """One sequence per (episode, task), in episode order; task 1 takes one random step (``rng``).
    An episode without actions gives only tasks 2 and 3."""
    rng = rng if rng is not None else np.random.default_rng(0)
    bad = set(tasks) - set(TASKS)
    if bad:
        raise ValueError(f"unknown KALM tasks {sorted(bad)}: use a subset of {TASKS}")
    out = []
    for ep in episodes:
        T = len(ep["actions"])
        if len(ep["observations"]) != T + 1:
            raise ValueError(f"an episode needs T+1 observations for T actions, got "
                             f"{len(ep['observations'])} and {T}")
        for task in tasks:
            if T == 0 and task in (0, 1):
                continue
            if task == 0:
                out.append(rollout_generation(ep))
            elif task == 1:
                out.append(dynamics_prediction(ep, int(rng.integers(T))))
            elif task == 2:
                out.append(terminal_state_prediction(ep))
            else:
                out.append(rollout_explanation(ep))
    return out


# --------------------------------------------------------------------------- grounding
TASK_NAMES = ("generation", "dynamics", "terminal", "explanation")  # task k is TASK_NAMES[k]


@dataclass
class GroundingConfig:
    """Everything a grounding run depends on (the seed and the data's sizes come with the data)."""

    model: str = "gemma-3-270m"
    """LM name, folder or .gguf (``llmrl.lm.load_model``); a local transformers model."""
    dtype: str = "auto"
    """auto (bf16 where the CPU has it), bf16 or fp32. KALM: fp32 on CLEVR."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda, ..."""
    tasks: tuple[str, ...] = TASK_NAMES
    """KALM's fine-tuning tasks: rollout generation, dynamics, terminal-state prediction, rollout explanation."""
    episodes: int = 0
    """Real episodes turned into fine-tuning sequences, from the first on (0: all given)."""
    epochs: int = 1
    """Passes over the sequences (KALM: 10 on CLEVR, with 7B full fine-tuning)."""
    batch_size: int = 8
    """Sequences per optimizer step (KALM: 24 on CLEVR)."""
    learning_rate: float = 1e-3
    """AdamW lr, decayed linearly to 0 (HF Trainer's default schedule). KALM sets none, so HF's
    5e-5 applies to its full 7B fine-tune; LoRA and the freshly initialised adapters of a small
    model learn far too slowly at that rate, so 1e-3 here. Use ~5e-5 with ``finetune="full"``."""
    weight_decay: float = 0.0
    """AdamW's weight decay."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    max_sequences: int = 0
    """Keep at most this many sequences (a random subset) per epoch; 0 keeps all."""
    finetune: str = "lora"
    """lora (peft on q/k/v/o projections) or full (every LM weight; KALM's choice)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scale numerator."""
    checkpoint_every: int = 100
    """Optimizer steps between atomic checkpoints (``checkpoints/latest.pt``)."""
    log_every: int = 10
    """Optimizer steps per progress.csv row (losses averaged over them)."""

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        unknown = [t for t in self.tasks if t not in TASK_NAMES]
        if unknown or not self.tasks:
            raise ValueError(f"unknown grounding task(s) {unknown}: choose from {', '.join(TASK_NAMES)}")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        for name in ("epochs", "batch_size", "learning_rate", "lora_r", "checkpoint_every", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.episodes < 0 or self.max_sequences < 0:
            raise ValueError("episodes and max_sequences must be >= 0 (0: all)")

    @property
    def task_ids(self) -> tuple[int, ...]:
        return tuple(TASK_NAMES.index(t) for t in self.tasks)


PROGRESS_COLUMNS = ("step", "epoch", "loss", "mse_state", "ce_action", "ce_text", "tokens_per_s", "lr", "elapsed_s")


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def make_grounded(config: GroundingConfig, state_dim: int, n_actions: int, lm: Any | None = None) -> GroundedLM:
    """The GroundedLM a config describes (loads the LM unless one is given)."""
    if lm is None:
        from llmrl.lm import load_model

        lm = load_model(config.model, dtype=config.dtype, device=_device(config.device))
    lora = default_lora(config.lora_r, config.lora_alpha) if config.finetune == "lora" else None
    return GroundedLM(lm, state_dim, n_actions, lora=lora)


def _epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: sort within windows of 16 batches (less padding),
    then shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * 16
    batches = []
    for w in range(0, len(order), window):
        chunk = order[w : w + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def ground(
    config: GroundingConfig,
    episodes: Sequence[Episode],
    out_dir: str | Path,
    *,
    n_actions: int,
    seed: int = 0,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    lm: Any | None = None,
) -> GroundedLM:
    """Fine-tune an LM on KALM's tasks over ``episodes``; returns the grounded LM (also saved to
    ``out_dir/grounded``). ``out_dir`` is a run folder (:mod:`llmrl.runs`: config.json,
    progress.csv, checkpoints/latest.pt); ``resume=True`` continues from the checkpoint.
    ``progress`` receives each progress row; ``lm`` reuses a loaded HFLM (it must match
    ``config.model``); ``seed`` picks the initial weights, the dynamics steps and the batches."""
    from llmrl.runs import RunFolder

    episodes = list(episodes)[: config.episodes or None]
    folder = RunFolder(out_dir, "grounding", config, resume=resume, may_change=("checkpoint_every", "log_every"),
                       identity={"seed": seed, "episodes": len(episodes)})
    torch.manual_seed(seed)
    state_dim = int(np.asarray(episodes[0]["observations"]).shape[1]) if episodes else 0
    grounded = make_grounded(config, state_dim, n_actions, lm)
    grounded.adapters.fit_normalisation(np.concatenate([np.asarray(e["observations"]) for e in episodes]))
    sequences = kalm_sequences(episodes, config.task_ids, np.random.default_rng(seed))
    if not sequences:
        raise ValueError("no training sequences: pass episodes with at least one step")
    plan = _GroundingPlan(config, [grounded.encode(s) for s in sequences], seed)
    trainable = [p for p in grounded.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: max(0.0, 1 - s / max(plan.total_steps, 1)))
    step = 0
    ck = folder.load_checkpoint()
    if ck is not None:
        grounded.load_trainable_state(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
    log = folder.progress(PROGRESS_COLUMNS, key="step", resume_at=step, tensorboard=False)
    grounded.train()
    meter = _Meter()
    while step < plan.total_steps:
        epoch, batch = plan.batch(step)
        with meter.timed():
            batch = grounded.collate(batch)
            losses = grounded(batch)
            optim.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optim.step()
            sched.step()
        meter.add(losses, batch.n_tokens)
        step += 1
        if step % config.log_every == 0 or step == plan.total_steps:
            row = {"step": step, "epoch": epoch, **meter.take(), "lr": sched.get_last_lr()[0]}
            log.write(row)
            if progress is not None:
                progress(row)
        if step % config.checkpoint_every == 0 or step == plan.total_steps:
            folder.save_checkpoint({"step": step, "model": grounded.trainable_state(), "optimizer": optim.state_dict(),
                                    "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state()})
    log.close()
    grounded.eval()
    grounded.save(folder.path / "grounded")
    return grounded


class _GroundingPlan:
    """Which sequences each optimizer step trains on: an epoch's batches depend only on (seed,
    epoch), so a resumed run replays them."""

    def __init__(self, config: GroundingConfig, encoded: list[Any], seed: int) -> None:
        self.encoded, self.seed, self.batch_size = encoded, seed, config.batch_size
        self.lengths = np.array([len(e) for e in encoded])
        self.per_epoch = min(config.max_sequences or len(encoded), len(encoded))
        self.steps_per_epoch = math.ceil(self.per_epoch / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self._epoch: tuple[int, list[np.ndarray]] = (-1, [])

    def batch(self, step: int) -> tuple[int, list[Any]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            keep = rng.permutation(len(self.encoded))[: self.per_epoch]
            self._epoch = (epoch, [keep[b] for b in _epoch_batches(self.lengths[keep], self.batch_size, rng)])
        return epoch, [self.encoded[i] for i in self._epoch[1][k]]


class _Meter:
    """Mean losses and tokens/s (busy time only) since the last progress row."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.n, self.tokens, self.busy = 0, 0, 0.0

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.busy += time.perf_counter() - t0

    def add(self, losses: dict[str, torch.Tensor], n_tokens: int) -> None:
        for name, v in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(v.detach())
        self.n += 1
        self.tokens += n_tokens

    def take(self) -> dict[str, float]:
        row = {name: v / self.n for name, v in self.sums.items()}
        row.update(tokens_per_s=self.tokens / self.busy, elapsed_s=time.perf_counter() - self.start)
        self.sums, self.n, self.tokens, self.busy = {}, 0, 0, 0.0
        return row


# --------------------------------------------------------------------------- imagination
def _step(
    grounded: GroundedLM, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any
) -> torch.Tensor:
    """Feed one vector per row, (B, hidden), through the LM with the cache; the new last hidden state."""
    decoder = grounded.decoder()
    return decoder(
        inputs_embeds=embeds[:, None], attention_mask=mask, position_ids=pos[:, None], use_cache=True,
        **kv_cache_kwargs(decoder, cache),
    ).last_hidden_state[:, -1]


def _encode_prompts(
    grounded: GroundedLM, prompts: list[Segments]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Left-padded prompts through the LM: (last hidden, mask, last position, KV cache)."""
    batch = grounded.collate([grounded.encode(p) for p in prompts], padding="left")
    out = grounded.decoder()(
        inputs_embeds=grounded.inputs_embeds(batch), attention_mask=batch.attention_mask,
        position_ids=batch.position_ids, use_cache=True,
    )
    return out.last_hidden_state[:, -1], batch.attention_mask, batch.position_ids[:, -1], returned_cache(out)


ProjectFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@torch.no_grad()
def imagine(
    grounded: GroundedLM,
    goals: Sequence[str],
    initial_states: np.ndarray,
    stop: StopFn | None = None,
    max_steps: int = 50,
    batch_size: int = 32,
    project: ProjectFn | None = None,
) -> list[Episode]:
    """Greedy imagined rollouts, one per (goal, real initial state).

    From task 0's prompt with s0, alternately take the argmax action from ``action_out`` and
    regress the next state from ``state_out`` (KALM's ``clevr_generate.py``: no sampling). A rollout
    ends when ``stop(i, s0, s_t)`` holds on a generated state s_t (``i`` indexes ``goals``) or
    after ``max_steps`` actions. Rollouts run ``batch_size`` at a time over one KV cache (prompts
    left-padded, positions counting real tokens only); a row leaves the batch when it stops.
    In fp32 the batched output equals one-at-a-time decoding up to float noise; in bf16 the
    rounding differs with the batch shape, so a near-tie between two actions can flip.

    ``project(previous_state, predicted_state)`` maps each prediction onto what the world allows
    (e.g. clip it to the table) before it is judged, recorded and fed back; the predictions as
    the LM made them are kept in each rollout's ``raw_observations``.
    """
    s0_all = np.asarray(initial_states, dtype=np.float32)
    if s0_all.ndim != 2 or len(s0_all) != len(goals):
        raise ValueError(f"initial_states must be (len(goals), state_dim), got {s0_all.shape} for {len(goals)} goals")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return _decode(grounded, goals, s0_all, stop, None, max_steps, batch_size, project)


WorldFn = Callable[[int, int], tuple[np.ndarray, bool]]


@torch.no_grad()
def act_in_world(
    grounded: GroundedLM,
    goals: Sequence[str],
    initial_states: np.ndarray,
    world: WorldFn,
    max_steps: int = 50,
    batch_size: int = 32,
) -> list[Episode]:
    """The grounded LM as a closed-loop policy: the same decoding as :func:`imagine`, but after
    each argmax action the next state comes from ``world(i, action) -> (state, done)`` (a real
    environment stepping rollout ``i``) instead of the LM's own prediction."""
    s0_all = np.asarray(initial_states, dtype=np.float32)
    if s0_all.ndim != 2 or len(s0_all) != len(goals):
        raise ValueError(f"initial_states must be (len(goals), state_dim), got {s0_all.shape} for {len(goals)} goals")
    return _decode(grounded, goals, s0_all, None, world, max_steps, batch_size)


def _decode(grounded: GroundedLM, goals: Sequence[str], s0_all: np.ndarray, stop: StopFn | None,
            world: WorldFn | None, max_steps: int, batch_size: int, project: ProjectFn | None = None) -> list[Episode]:
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    was_training = grounded.training
    grounded.eval()
    results: list[Episode] = []
    for start in range(0, len(goals), batch_size):
        ids = list(range(start, min(start + batch_size, len(goals))))
        results += _imagine_batch(grounded, [goals[i] for i in ids], s0_all[ids], ids, stop, max_steps, world, project)
    grounded.train(was_training)
    return results


def _imagine_batch(grounded: GroundedLM, goals: list[str], s0: np.ndarray, ids: list[int],
                   stop: StopFn | None, max_steps: int, world: WorldFn | None = None,
                   project: ProjectFn | None = None) -> list[Episode]:
    dev = grounded.device
    h, mask, pos, cache = _encode_prompts(grounded, [rollout_prompt(g, s) for g, s in zip(goals, s0)])
    obs = [[s] for s in s0]
    raw = [[s] for s in s0]
    acts: list[list[int]] = [[] for _ in goals]
    rows = np.arange(len(goals))  # which rollout each batch row is
    ones = torch.ones((len(goals), 1), dtype=mask.dtype, device=dev)
    for t in range(max_steps):
        a = grounded.action_logits(h).argmax(-1)
        mask, pos = torch.cat([mask, ones[: len(rows)]], 1), pos + 1
        h = _step(grounded, grounded.embed_action(a), mask, pos, cache)
        s = grounded.adapters.destandardise(grounded.state_prediction(h))
        s_np, a_np = s.cpu().numpy(), a.cpu().numpy()
        done = np.zeros(len(rows), dtype=bool)
        for j, r in enumerate(rows):
            acts[r].append(int(a_np[j]))
            raw[r].append(s_np[j].copy())
            if world is not None:  # a real next state replaces the prediction
                s_np[j], done[j] = world(ids[r], int(a_np[j]))
            else:
                if project is not None:
                    s_np[j] = project(obs[r][-1], s_np[j])
                done[j] = stop is not None and bool(stop(ids[r], s0[r], s_np[j]))
            obs[r].append(s_np[j].copy())
        if world is not None or project is not None:
            s = torch.as_tensor(s_np, device=dev)
        if t == max_steps - 1 or done.all():
            break
        if done.any():
            keep = torch.as_tensor(np.nonzero(~done)[0], device=dev)
            cache.batch_select_indices(keep)
            rows, mask, pos, s = rows[~done], mask[keep], pos[keep], s[keep]
        mask, pos = torch.cat([mask, ones[: len(rows)]], 1), pos + 1
        h = _step(grounded, grounded.embed_state(s), mask, pos, cache)
    return [{"observations": np.stack(obs[r]).astype(np.float32), "actions": np.asarray(acts[r], dtype=np.int64),
             "goal": goals[r], "raw_observations": np.stack(raw[r]).astype(np.float32)} for r in range(len(goals))]


@torch.no_grad()
def explain(grounded: GroundedLM, episodes: Sequence[Episode], max_new_tokens: int = 32,
            batch_size: int = 16) -> list[str]:
    """Task 3 decoded greedily: the instruction the LM reads in each rollout (up to a newline)."""
    was_training = grounded.training
    grounded.eval()
    tok = grounded.lm.tokenizer
    texts: list[str] = []
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start : start + batch_size]
        h, mask, pos, cache = _encode_prompts(grounded, [explanation_prompt(ep) for ep in chunk])
        pieces: list[list[int]] = [[] for _ in chunk]
        active = np.ones(len(chunk), dtype=bool)
        ones = torch.ones((len(chunk), 1), dtype=mask.dtype, device=grounded.device)
        for _ in range(max_new_tokens):
            nxt = grounded.text_logits(h).argmax(-1)
            for j, t in enumerate(nxt.tolist()):
                if not active[j]:
                    continue
                if t == tok.eos_token_id or "\n" in tok.decode([t]):
                    active[j] = False
                else:
                    pieces[j].append(t)
            if not active.any():
                break
            # Finished rows keep decoding (their output is ignored): simpler than shrinking the cache.
            mask, pos = torch.cat([mask, ones], 1), pos + 1
            h = _step(grounded, grounded.embed_tokens(nxt), mask, pos, cache)
        texts += [tok.decode(p).strip() for p in pieces]
    grounded.train(was_training)
    return texts


@torch.no_grad()
def teacher_forced_metrics(grounded: GroundedLM, episodes: Sequence[Episode], batch_size: int = 16) -> dict[str, float]:
    """One-step accuracy of task 0 under teacher forcing: action accuracy (argmax = real action),
    and state RMSE in raw units. (KALM reports ~30% single-step action match.)"""
    was_training = grounded.training
    grounded.eval()
    hits = n_a = 0
    sq, n_s = 0.0, 0
    stepped = [ep for ep in episodes if len(ep["actions"])]
    for start in range(0, len(stepped), batch_size):
        batch = grounded.batch([rollout_generation(ep) for ep in stepped[start : start + batch_size]])
        h = grounded.hidden_states(batch)
        logits = grounded.action_logits(h[batch.action_from[0], batch.action_from[1]])
        hits += int((logits.argmax(-1) == batch.action_targets).sum())
        n_a += len(batch.action_targets)
        pred = grounded.adapters.destandardise(grounded.state_prediction(h[batch.state_from[0], batch.state_from[1]]))
        sq += float(((pred - batch.state_targets) ** 2).sum())
        n_s += batch.state_targets.numel()
    grounded.train(was_training)
    return {"action_accuracy": hits / max(n_a, 1), "state_rmse": math.sqrt(sq / max(n_s, 1))}


__all__ = [
    "GroundingConfig", "PROGRESS_COLUMNS", "TASKS", "TASK_NAMES", "dynamics_prediction", "explain", "explanation_prompt",
    "ground", "imagine", "kalm_sequences", "make_grounded", "rollout_explanation", "rollout_generation",
    "rollout_prompt", "teacher_forced_metrics", "terminal_state_prediction",
]
