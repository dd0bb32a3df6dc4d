"""GLAM's PPO update of the LM policy: seconds per update, tokens/s and achieved TFLOP/s, for the
update as it was (``baseline``) and as tuned for a GPU (``tuned``), side by side in one run.

    python benchmarks/bench_glam_update.py                              # cpu preset, this machine
    python benchmarks/bench_glam_update.py --preset paper --updates 2   # GLAM's scale (a GPU)
    python benchmarks/bench_glam_update.py --finetune full --variants ""   # only the checkpoint stall
    python benchmarks/bench_glam_update.py --preset paper --random-from DIR --compile
        # DIR holds a model's config.json and tokenizer: a randomly initialised copy is built
        # there (throughput does not depend on the weights), for machines without the weights

Both variants run ``llmrl.recipes.glam.update`` on the same batch: the preset's number of
transitions (n_envs x n_steps) of real GLAM prompts from random-action BabyAI-Text episodes,
with random actions, advantages and returns.

- baseline: micro-batches of ``micro_batch_size`` prompts in minibatch order, torch's default
  Adam (the update the issue measured on an H100: 36 s for the paper preset);
- tuned: prompts sorted by length and packed to ``--tokens`` padded tokens per micro-batch, the
  fused Adam kernel on CUDA, and (``--compile``) the decoder under torch.compile.

FLOPs are counted from the tokens actually used (no padding): forward 2·N + attention per token
(N = the LM's non-embedding weights), the output layer only where a candidate token is scored;
backward twice the forward for a full fine-tune, the same as the forward for LoRA (activation
gradients only, weight gradients for the adapters are negligible). TFLOP/s = FLOPs / seconds.
Also printed: the stall a checkpoint costs the training loop, written in place or in the
background (``RunFolder.save_checkpoint(background=True)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ppo import rollout_prompts  # noqa: E402

from llmrl.recipes.glam import PRESETS, build_policy, micro_batches, trainable_state, update  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, no sparsity


def random_model(config_dir: Path, out: Path, dtype: torch.dtype) -> Path:
    """A randomly initialised model with ``config_dir``'s architecture and tokenizer, saved to ``out``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=dtype)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def batch_for(config, prompts: list[str], n_actions: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = len(prompts)
    return {"prompts": prompts, "actions": torch.from_numpy(rng.integers(0, n_actions, n)),
            "logp": torch.full((n,), -float(np.log(n_actions))), "values": torch.zeros(n),
            "advantages": torch.from_numpy(rng.normal(size=n).astype(np.float32)),
            "returns": torch.from_numpy(rng.normal(size=n).astype(np.float32))}


def update_flops(policy, config, batch, full: bool) -> float:
    """FLOPs of one update from the tokens it uses (see the module docstring)."""
    lm = policy.lm
    text = lm.model.config.get_text_config()
    embed = lm.model.get_input_embeddings().weight.numel()
    n_weights = sum(p.numel() for p in lm.model.parameters()) - embed
    heads, head_dim = text.num_attention_heads, getattr(text, "head_dim", text.hidden_size // text.num_attention_heads)
    vocab, width, layers = embed // text.hidden_size, text.hidden_size, text.num_hidden_layers
    action_tokens = [len(lm.encode(" " + a)) for a in config.actions]
    forward = 0.0
    n_minibatches = config.ppo.n_epochs * (len(batch["prompts"]) // config.ppo.minibatch_size)
    rng = np.random.default_rng(0)
    for _ in range(n_minibatches):  # the prompts an update forwards: distinct ones per minibatch
        mb = rng.choice(len(batch["prompts"]), config.ppo.minibatch_size, replace=False)
        for p in dict.fromkeys(batch["prompts"][j] for j in mb):
            t = len(lm.encode(p)) + 1
            cand = sum(action_tokens)
            forward += 2 * n_weights * (t + cand) + 2 * layers * heads * head_dim * (t * t + cand * t)
            forward += 2 * vocab * width * cand  # output layer at each scored candidate token
    return forward * (3 if full else 2)


def time_updates(policy, config, batch, updates: int) -> tuple[float, float]:
    """(seconds per update after a warm-up update, peak GPU memory in GiB)."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    fused = trainable[0].device.type == "cuda" and config.micro_batch_tokens > 0
    optim = torch.optim.Adam(trainable, lr=config.ppo.learning_rate, eps=config.ppo.adam_eps, fused=fused or None)
    rng = np.random.default_rng(0)
    cuda = trainable[0].device.type == "cuda"
    update(policy, optim, config, batch, rng)  # warm-up (and compile)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(updates):
        update(policy, optim, config, batch, rng)
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return (time.perf_counter() - t0) / updates, peak


def checkpoint_stall(policy, config, optim_state: dict) -> tuple[float, float]:
    """Seconds the loop waits for a checkpoint written in place vs in the background."""
    from llmrl.runs import RunFolder

    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder(Path(tmp) / "run", "bench", config)
        state = {"trainable": trainable_state(policy, config), "optimizer": optim_state}
        t0 = time.perf_counter()
        folder.save_checkpoint(state, plain=True)
        inline = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder.save_checkpoint(state, plain=True, background=True)
        background = time.perf_counter() - t0
        folder.wait_for_checkpoint()
    return inline, background


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=list(PRESETS))
    p.add_argument("--model", default=None, help="LM name or folder (default: the preset's)")
    p.add_argument("--random-from", default=None, help="folder with config.json + tokenizer: time a random-init copy")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--updates", type=int, default=1, help="timed updates per variant (after one warm-up)")
    p.add_argument("--transitions", type=int, default=0, help="transitions per update (0: the preset's)")
    p.add_argument("--tokens", type=int, default=32768, help="tuned: padded tokens per micro-batch")
    p.add_argument("--compile", action="store_true", help="tuned: torch.compile the decoder")
    p.add_argument("--variants", default="baseline,tuned", help="comma-separated; empty: only the checkpoint stall")
    p.add_argument("--finetune", default=None, choices=("lora", "full"), help="override the preset's")
    args = p.parse_args()

    config = PRESETS[args.preset]
    model = args.model or config.model
    if args.random_from:
        dtype = torch.bfloat16 if args.dtype in ("auto", "bf16") else torch.float32
        model = str(random_model(Path(args.random_from), Path(tempfile.mkdtemp()) / "random-model", dtype))
    config = dataclasses.replace(config, model=model, device=args.device, dtype=args.dtype,
                                 finetune=args.finetune or config.finetune)
    n = args.transitions or config.batch_size
    policy = build_policy(config)
    env_id = config.env_id
    prompts = rollout_prompts(env_id, n, config.n_observations)
    batch = batch_for(config, prompts, len(config.actions))
    device = next(policy.parameters()).device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    flops = update_flops(policy, config, batch, full=config.finetune == "full")
    print(f"{args.preset} preset, {config.finetune} fine-tune, {n} transitions x {config.ppo.n_epochs} epochs, "
          f"minibatch {config.ppo.minibatch_size}; model {Path(model).name}; {name}; "
          f"{flops / 1e12:.2f} TFLOP per update")
    results = {}
    for variant in filter(None, args.variants.split(",")):
        tuned = variant == "tuned"
        cfg = dataclasses.replace(config, micro_batch_tokens=args.tokens if tuned else 0)
        if tuned and args.compile:
            policy.lm.model.get_decoder().compile(dynamic=True)
        seconds, mem = time_updates(policy, cfg, batch, args.updates)
        lengths = {q: len(policy.lm.encode(q)) for q in set(prompts)}
        passes = len(micro_batches(sorted(set(prompts[: cfg.ppo.minibatch_size]), key=lengths.__getitem__), cfg, lengths))
        results[variant] = seconds
        share = f", {100 * flops / seconds / 1e12 / peak:.1f}% of {peak:.0f} peak" if peak else ""
        print(f"  {variant:<9} {seconds:8.2f} s/update  {n * cfg.ppo.n_epochs / seconds:8.1f} samples/s  "
              f"{flops / seconds / 1e12:7.3f} TFLOP/s{share}  ~{passes} passes/minibatch  peak mem {mem:.1f} GiB")
    if "baseline" in results and "tuned" in results:
        print(f"  tuned / baseline speed: {results['baseline'] / results['tuned']:.2f}x")
    trainable = [q for q in policy.parameters() if q.requires_grad]
    optim = torch.optim.Adam(trainable)
    policy(prompts[:2])[0].sum().backward()
    optim.step()
    inline, background = checkpoint_stall(policy, config, optim.state_dict())
    print(f"  checkpoint stall: {inline:.2f} s written in place, {background:.2f} s in the background "
          f"({inline / max(background, 1e-9):.1f}x less)")


if __name__ == "__main__":
    main()
