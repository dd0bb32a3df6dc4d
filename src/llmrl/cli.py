"""The ``llmrl`` command line.

    llmrl eval --agents random,llm,bot --envs BabyAI-Text-GoToLocal-v0 --episodes 100 --out runs/zero-shot
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

AGENTS = ("random", "llm", "llm-sampled", "bot")


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmrl", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="run agents for N episodes and write a JSON + Markdown table")
    ev.add_argument("--agents", type=_csv, default=["random", "llm", "bot"],
                    help=f"comma-separated, from {', '.join(AGENTS)} (llm = greedy zero-shot LM policy)")
    ev.add_argument("--envs", type=_csv, default=["BabyAI-Text-GoToLocal-v0"],
                    help="comma-separated environment ids (see llmrl.envs.TEXT_ENV_IDS)")
    ev.add_argument("--episodes", type=int, default=100, help="episodes per (agent, environment)")
    ev.add_argument("--n-envs", type=int, default=16, help="environments stepped in lockstep (the LM batch)")
    ev.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k")
    ev.add_argument("--model", default=None, help="LM name, folder, .gguf or openai:<url>#<model> (default gemma-3-270m)")
    ev.add_argument("--dtype", default="auto", help="hf backend dtype: auto (bf16 where the CPU has it), fp32, bf16")
    ev.add_argument("--no-cache", action="store_true", help="do not use the persistent LM result cache")
    ev.add_argument("--cache-file", default=None, help="sqlite file for the LM result cache (default: $LLMRL_CACHE_DIR/lm-cache.sqlite)")
    ev.add_argument("--normalise-length", action="store_true", help="score actions by mean token log-prob")
    ev.add_argument("--out", default="runs/eval", help="folder for results.json and results.md")
    ev.add_argument("--resume", action="store_true",
                    help="keep the (agent, environment) results already in --out from the same command, run the rest")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _make_agent(kind: str, lm_factory, seed: int, normalise_length: bool):
    from llmrl.agents import BotAgent, RandomAgent

    if kind == "random":
        return RandomAgent(seed=seed)
    if kind == "bot":
        return BotAgent()
    if kind in ("llm", "llm-sampled"):
        from llmrl.roles import LLMPolicyAgent

        return LLMPolicyAgent(lm_factory(), greedy=kind == "llm", normalise_length=normalise_length,
                              seed=seed, name=kind)
    raise SystemExit(f"unknown agent {kind!r}: choose from {', '.join(AGENTS)}")


def cmd_eval(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    import llmrl.envs as envs
    from llmrl.evaluation import evaluate, load_results, markdown_table, write_results
    from llmrl.lm import DEFAULT_MODEL, load_model

    for a in args.agents:
        if a not in AGENTS:
            raise SystemExit(f"unknown agent {a!r}: choose from {', '.join(AGENTS)}")
    for e in args.envs:
        if e not in envs.TEXT_ENV_IDS:
            raise SystemExit(f"unknown environment {e!r}: choose from {', '.join(envs.TEXT_ENV_IDS)}")
    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")

    model_name = args.model or DEFAULT_MODEL
    lm = None

    def lm_factory():
        nonlocal lm
        if lm is None:
            # dtype is the hf backend's option; servers and llama.cpp fix their own precision.
            remote = model_name.startswith(("openai:", "llamacpp:"))
            kwargs = {} if remote else {"dtype": args.dtype}
            lm = load_model(model_name, **kwargs)
            if not args.no_cache:
                from llmrl.lm.cache import CachedLM

                lm = CachedLM(lm, args.cache_file)
        return lm

    meta = {
        "command": "llmrl " + " ".join(args.argv),
        "model": model_name if {"llm", "llm-sampled"} & set(args.agents) else None,
        "dtype": args.dtype,
        "normalise_length": args.normalise_length,
        "episodes": args.episodes,
        "n_envs": args.n_envs,
        "seed": args.seed,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    # Results are written after every (agent, environment) pair, so a killed run loses at most
    # the pair in progress. --resume keeps the finished pairs of a run with the same settings
    # (episodes, seed; model, dtype and scoring for LM agents) and runs the rest.
    done = {}
    previous = Path(args.out) / "results.json"
    if args.resume and previous.exists():
        old = json.loads(previous.read_text()).get("meta", {})
        same_lm = all(old.get(k) == meta[k] for k in ("model", "dtype", "normalise_length"))
        for r in load_results(previous):
            same_run = r.n == args.episodes and r.episodes[0].seed == args.seed
            if same_run and (same_lm or not r.agent.startswith("llm")):
                done[(r.agent, r.env_id)] = r
    results = []
    total = args.episodes * len(args.agents) * len(args.envs)
    bar = tqdm(total=total, disable=args.quiet, unit="ep", dynamic_ncols=True)
    for env_id in args.envs:
        for kind in args.agents:
            if (kind, env_id) in done:
                results.append(done[(kind, env_id)])
                bar.update(args.episodes)
                continue
            agent = _make_agent(kind, lm_factory, args.seed, args.normalise_length)
            bar.set_description(f"{kind} on {env_id}")
            done_before = bar.n
            res = evaluate(agent, lambda env_id=env_id: gym.make(env_id), args.episodes, args.n_envs,
                           args.seed, env_id, progress=lambda k: bar.update(done_before + k - bar.n))
            results.append(res)
            out = write_results(results, args.out, meta)
            bar.set_postfix(success=f"{res.summary()['success_rate']:.2f}")
    bar.close()
    out = write_results(results, args.out, meta)
    print(markdown_table(results))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from llmrl.lm import LMError

    try:
        if args.command == "eval":
            return cmd_eval(args)
    except LMError as e:  # a problem the user can fix: say what, without a traceback
        raise SystemExit(f"llmrl: {e}") from None
    raise SystemExit(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
