"""The ``llmrl`` command line.

    llmrl eval --agents random,llm,bot --envs BabyAI-Text-GoToLocal-v0 --episodes 100 --out runs/zero-shot
    llmrl train glam --preset cpu --seed 0 --out runs/glam/cpu-s0      (add --resume after a kill)
    llmrl eval --suite glam-generalisation --policy runs/glam/cpu-s0 --agents llm --out runs/glam/gen-s0
    llmrl plot runs/glam/cpu-s* --references runs/zero-shot --out runs/glam/report
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
SUITES = ("glam-generalisation",)


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
    ev.add_argument("--n-observations", type=int, default=3,
                    help="observations kept in the LM prompt (GLAM: 3; the cpu GLAM preset trains with 1)")
    ev.add_argument("--out", default="runs/eval", help="folder for results.json and results.md")
    ev.add_argument("--resume", action="store_true",
                    help="keep the (agent, environment) results already in --out from the same command, run the rest")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--suite", choices=SUITES, default=None,
                    help="evaluate on a test suite instead of --envs: glam-generalisation = GLAM's held-out "
                         "pairs, renamed objects, invented words, rephrased goals, new action words, French")
    ev.add_argument("--tests", type=_csv, default=None,
                    help="with --suite: run only these of its tests (e.g. original,renamed-objects,french)")
    ev.add_argument("--policy", default=None,
                    help="a `llmrl train glam` run folder: the llm agents use its trained policy "
                         "(its model, prompt length and scoring; the suite is built on its level)")

    tr = sub.add_parser("train", help="train an agent (writes a run folder: config, progress.csv, TensorBoard, checkpoints)")
    recipes = tr.add_subparsers(dest="recipe", required=True)
    glam = recipes.add_parser("glam", help="GLAM: PPO fine-tuning of the LM policy on BabyAI-Text")
    _add_run_args(glam, "cpu", ("cpu", "paper"))
    _add_config_args(glam, "llmrl.recipes.glam", "GLAMConfig", "PRESETS")
    ellm = recipes.add_parser("ellm", help="ELLM: LM-suggested goals vs no bonus, novelty, RND and the oracle (DQN on Crafter-Text)")
    ellm.add_argument("--preset", default="cpu", choices=("cpu", "paper"), help="named configuration to start from")
    ellm.add_argument("--out", default="runs/ellm", help="folder for one run per (method, seed), summary.json and summary.md")
    ellm.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_args(ellm, "llmrl.recipes.ellm", "ELLMConfig", "PRESETS")
    sym = recipes.add_parser("symbolic-ppo", help="Symbolic-PPO baseline (Stable-Baselines3) on BabyAI's symbolic view")
    _add_run_args(sym, "cpu", ("cpu", "paper"))
    _add_config_args(sym, "llmrl.rl.symbolic_ppo", "SymbolicPPOConfig", "PRESETS")

    kalm = sub.add_parser("kalm", help="KALM on CLEVR-Robot: collect | ground | imagine | train | evaluate | all")
    kalm.add_argument("stage", choices=("collect", "ground", "imagine", "train", "evaluate", "all"),
                      help="the stage to run (its inputs must exist) or all of them; finished stages are skipped")
    kalm.add_argument("--preset", default="cpu", choices=("cpu", "paper"), help="named configuration to start from")
    kalm.add_argument("--out", default="runs/kalm", help="pipeline folder: one sub-folder per stage, keyed by its inputs")
    kalm.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_args(kalm, "llmrl.recipes.kalm", "KALMConfig", "PRESETS")

    pl = sub.add_parser("plot", help="plot runs' success vs env steps (PNG) and write an HTML report")
    pl.add_argument("runs", nargs="+", help="run folders (or folders holding run folders)")
    pl.add_argument("--references", type=_csv, default=[],
                    help="comma-separated `llmrl eval` results (folders or results.json) drawn as horizontal lines")
    pl.add_argument("--out", default="runs/report", help="folder for plot.png, losses.png and report.html")
    pl.add_argument("--title", default=None)
    pl.add_argument("--metric", default="success_rate",
                    help="progress.csv column to plot: success_rate (GLAM), achievements or crafter_score (ELLM), ...")
    pl.add_argument("--window", type=float, default=100, help="episodes in the rolling success window")
    return parser


def _add_run_args(p: argparse.ArgumentParser, default_preset: str, presets: Sequence[str]) -> None:
    p.add_argument("--preset", default=default_preset, choices=presets, help="named configuration to start from")
    p.add_argument("--out", required=True, help="run folder (created; must be new unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (CleanRL-style help) read from the source."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def _add_config_args(p: argparse.ArgumentParser, module: str, cls_name: str, presets_name: str) -> None:
    """One ``--field-name`` flag per config field; unset flags keep the preset's value."""
    import dataclasses
    import importlib

    mod = importlib.import_module(module)
    cls, presets = getattr(mod, cls_name), getattr(mod, presets_name)
    docs = {}
    for name, doc in _field_docs(cls).items():
        values = "; ".join(f"{k}: {getattr(v, name)}" for k, v in presets.items())
        docs[name] = f"{doc} [{values}]".replace("%", "%%")
    for f in dataclasses.fields(cls):
        docs.setdefault(f.name, "[" + "; ".join(f"{k}: {getattr(v, f.name)}" for k, v in presets.items()) + "]")
    group = p.add_argument_group(f"{cls_name} fields (override the preset)")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, type=_bool, default=None, metavar="BOOL", help=docs.get(f.name))
        elif isinstance(default, tuple):
            group.add_argument(flag, dest=f.name, type=lambda t: tuple(_csv(t)), default=None, metavar="A,B,...",
                               help=docs.get(f.name))
        else:
            group.add_argument(flag, dest=f.name, type=type(default), default=None, help=docs.get(f.name))
    p.set_defaults(config_fields=[f.name for f in dataclasses.fields(cls)])


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _make_agent(kind: str, lm_factory, seed: int, normalise_length: bool, n_observations: int = 3,
                actions: Sequence[str] | None = None, name: str | None = None):
    from llmrl.agents import BotAgent, RandomAgent

    if kind == "random":
        return RandomAgent(seed=seed)
    if kind == "bot":
        return BotAgent()
    if kind in ("llm", "llm-sampled"):
        from llmrl.envs.babyai_text import ACTIONS
        from llmrl.roles import LLMPolicyAgent

        return LLMPolicyAgent(lm_factory(), actions or ACTIONS, greedy=kind == "llm",
                              normalise_length=normalise_length, n_observations=n_observations,
                              seed=seed, name=name or kind)
    raise SystemExit(f"unknown agent {kind!r}: choose from {', '.join(AGENTS)}")


def _eval_cases(args: argparse.Namespace, base_env_id: str | None):
    """(name in tables, make_env, action strings) for each environment to evaluate on."""
    import gymnasium as gym

    import llmrl.envs as envs
    from llmrl.envs.babyai_text import ACTIONS

    if args.suite == "glam-generalisation":
        from llmrl.envs.text_variants import glam_generalisation_suite, make_variant_env

        env_id = base_env_id or args.envs[0]
        suite = glam_generalisation_suite(env_id)
        names = [v.name for v in suite]
        unknown = sorted(set(args.tests or ()) - set(names))
        if unknown:
            raise SystemExit(f"unknown test(s) {', '.join(unknown)} in {args.suite}: choose from {', '.join(names)}")
        return [(f"{v.env_id.removeprefix('BabyAI-Text-')}:{v.name}", lambda v=v: make_variant_env(v), v.actions)
                for v in suite if not args.tests or v.name in args.tests]
    for e in args.envs:
        if e not in envs.TEXT_ENV_IDS:
            raise SystemExit(f"unknown environment {e!r}: choose from {', '.join(envs.TEXT_ENV_IDS)}")
    return [(e, lambda e=e: gym.make(e), ACTIONS) for e in args.envs]


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llmrl.evaluation import evaluate, load_results, markdown_table, write_results
    from llmrl.lm import DEFAULT_MODEL, load_model

    for a in args.agents:
        if a not in AGENTS:
            raise SystemExit(f"unknown agent {a!r}: choose from {', '.join(AGENTS)}")
    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")

    model_name = args.model or DEFAULT_MODEL
    lm = None
    policy_config = None
    if args.policy:
        # A trained policy brings its own model, prompt length and scoring.
        from llmrl.recipes.glam import read_config

        try:
            policy_config = read_config(Path(args.policy))
        except FileNotFoundError as e:
            raise SystemExit(f"llmrl: {e}") from None
        model_name = f"{policy_config.model} + {args.policy}"
        args.n_observations = policy_config.n_observations
        args.normalise_length = policy_config.normalise_length

    def lm_factory():
        nonlocal lm
        if lm is None and args.policy:
            import hashlib

            from llmrl.recipes.glam import load_trained_policy, trained_weights

            lm = load_trained_policy(args.policy)[0].lm
            if not args.no_cache:
                # Trained weights change the scores: key the cache on the weights file's content.
                from llmrl.lm.cache import CachedLM

                digest = hashlib.sha256(trained_weights(args.policy).read_bytes()).hexdigest()[:16]
                lm = CachedLM(lm, args.cache_file, model_key=f"{lm.cache_identity}+trained:{digest}")
        elif lm is None:
            # dtype is the hf backend's option; servers and llama.cpp fix their own precision.
            remote = model_name.startswith(("openai:", "llamacpp:"))
            kwargs = {} if remote else {"dtype": args.dtype}
            lm = load_model(model_name, **kwargs)
            if not args.no_cache:
                from llmrl.lm.cache import CachedLM

                lm = CachedLM(lm, args.cache_file)
        return lm

    cases = _eval_cases(args, policy_config.env_id if policy_config else None)
    label = policy_config.label if policy_config else None
    meta = {
        "command": "llmrl " + " ".join(args.argv),
        "model": model_name if {"llm", "llm-sampled"} & set(args.agents) else None,
        "policy": args.policy,
        "suite": args.suite,
        "tests": args.tests,
        "dtype": args.dtype,
        "normalise_length": args.normalise_length,
        "n_observations": args.n_observations,
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
        lm_keys = {"model": None, "policy": None, "dtype": "auto", "normalise_length": False, "n_observations": 3}
        same_lm = all(old.get(k, d) == meta[k] for k, d in lm_keys.items())
        for r in load_results(previous):
            same_run = r.n == args.episodes and r.episodes[0].seed == args.seed
            if same_run and (same_lm or not r.agent.startswith(("llm", label or "llm"))):
                done[(r.agent, r.env_id)] = r
    results = []
    total = args.episodes * len(args.agents) * len(cases)
    bar = tqdm(total=total, disable=args.quiet, unit="ep", dynamic_ncols=True)
    for env_name, make_env, actions in cases:
        for kind in args.agents:
            name = kind.replace("llm", label, 1) if label and kind.startswith("llm") else kind
            if (name, env_name) in done:
                results.append(done[(name, env_name)])
                bar.update(args.episodes)
                continue
            agent = _make_agent(kind, lm_factory, args.seed, args.normalise_length, args.n_observations,
                                actions, name)
            bar.set_description(f"{name} on {env_name}")
            done_before = bar.n
            res = evaluate(agent, make_env, args.episodes, args.n_envs, args.seed, env_name,
                           progress=lambda k: bar.update(done_before + k - bar.n))
            results.append(res)
            out = write_results(results, args.out, meta)
            bar.set_postfix(success=f"{res.summary()['success_rate']:.2f}")
    bar.close()
    out = write_results(results, args.out, meta)
    print(markdown_table(results))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    overrides = {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
    try:
        if args.recipe == "ellm":
            from llmrl.recipes import ellm

            config = ellm.config_from(args.preset, **overrides)
            out = ellm.run_all(config, args.out, progress=not args.quiet)
            print((out / "summary.md").read_text())
            print(f"runs and summary written to {out}; plot with: llmrl plot {out} --metric achievements")
            return 0
        if args.recipe == "glam":
            from llmrl.recipes import glam

            config = glam.config_from(args.preset, **overrides)
            glam.train(config, args.out, resume=args.resume, progress=not args.quiet,
                       command="llmrl " + " ".join(args.argv))
        else:
            from llmrl.rl import symbolic_ppo

            config = replace(symbolic_ppo.PRESETS[args.preset], **overrides)
            symbolic_ppo.train_symbolic_ppo(config, args.out, resume=args.resume, progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        raise SystemExit(f"llmrl: {e}") from None
    print(f"run written to {args.out}: config.json, progress.csv, tb/, checkpoints/, eval/")
    return 0


def cmd_kalm(args: argparse.Namespace) -> int:
    from llmrl.recipes import kalm

    overrides = {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
    try:
        config = kalm.config_from(args.preset, **overrides)
        if args.stage == "all":
            path = kalm.run_all(config, args.out, quiet=args.quiet)
        else:
            path = kalm.run_stage(args.stage, config, args.out, quiet=args.quiet)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"llmrl: {e}") from None
    print(f"{args.stage}: {path}")
    if (path / "results.md").exists():
        print((path / "results.md").read_text())
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from llmrl.report import RunFormatError, plot_command

    try:
        html = plot_command(args.runs, args.out, args.references, args.title, window_episodes=args.window,
                            metric=args.metric)
    except (RunFormatError, FileNotFoundError) as e:
        raise SystemExit(f"llmrl: {e}") from None
    print(f"wrote {html} and its PNGs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from llmrl.lm import LMError

    try:
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "kalm":
            return cmd_kalm(args)
        if args.command == "plot":
            return cmd_plot(args)
    except LMError as e:  # a problem the user can fix: say what, without a traceback
        raise SystemExit(f"llmrl: {e}") from None
    raise SystemExit(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
