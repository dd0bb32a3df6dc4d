"""The ``llmrl`` command line.

    llmrl eval --agents random,llm,bot --envs BabyAI-Text-GoToLocal-v0 --episodes 100 --out runs/zero-shot
    llmrl train --list
    llmrl train glam --preset cpu --seed 0 --out runs/glam/cpu-s0      (add --resume after a kill)
    llmrl train kalm --preset cpu --out runs/kalm [--stage collect|ground|imagine|train|evaluate]
    llmrl eval --suite glam-generalisation --policy runs/glam/cpu-s0 --agents llm --out runs/glam/gen-s0
    llmrl eval --suite world-model --out runs/world-model
    llmrl plot runs/glam/cpu-s* --references runs/zero-shot --out runs/glam/report
    llmrl data make pendulum-medium-replay --seed 0 [--minari]      (D4RL-style data, made here)

This module imports no recipe, torch or environment until a command needs it: ``llmrl --help``
is instant, and one recipe's dependencies never stop another from running.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

AGENTS = ("random", "llm", "llm-sampled", "bot", "glam", "glam-greedy", "glam-greedy-lb")
# glam agents run a trained GLAM policy (--policy) in one of its evaluation modes.
GLAM_MODES = {"glam": "sampled", "glam-greedy": "greedy", "glam-greedy-lb": "greedy-lb"}
SUITES = ("glam-generalisation", "world-model")


class UsageError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmrl", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="run agents for N episodes and write a JSON + Markdown table")
    ev.add_argument("--agents", type=_csv, default=["random", "llm", "bot"],
                    help=f"comma-separated, from {', '.join(AGENTS)} (llm = the greedy zero-shot LM; glam = a "
                         "trained GLAM policy, sampled as GLAM evaluates; glam-greedy-lb = greedy, sampling "
                         "when a prompt comes back a third time)")
    ev.add_argument("--envs", type=_csv, default=["BabyAI-Text-GoToLocal-v0"],
                    help="comma-separated environment ids (see llmrl.envs.TEXT_ENV_IDS)")
    ev.add_argument("--episodes", type=int, default=100, help="episodes per (agent, environment)")
    ev.add_argument("--n-envs", type=int, default=16, help="environments stepped in lockstep (the LM batch)")
    ev.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k")
    ev.add_argument("--model", default=None, help="LM name, folder, .gguf or openai:<url>#<model> (default gemma-3-270m)")
    ev.add_argument("--dtype", default="auto", help="hf backend dtype: auto (bf16 where the CPU has it), fp32, bf16")
    ev.add_argument("--lm-timeout", type=float, default=None,
                    help="openai: models: seconds one request may take in all (default 60)")
    ev.add_argument("--lm-retries", type=int, default=None,
                    help="openai: models: retries after time-outs, connection errors, 429 and 5xx (default 4)")
    ev.add_argument("--no-cache", action="store_true", help="do not use the persistent LM result cache")
    ev.add_argument("--cache-file", default=None, help="sqlite file for the LM result cache (default: $LLMRL_CACHE_DIR/lm-cache.sqlite)")
    ev.add_argument("--normalise-length", action="store_true", help="score actions by mean token log-prob")
    ev.add_argument("--n-observations", type=int, default=3,
                    help="observations kept in the zero-shot LM's prompt (GLAM: 3; the cpu GLAM preset trains with 1)")
    ev.add_argument("--prompt-style", choices=("training", "joined"), default="training",
                    help="the zero-shot LM's prompt: GLAM's training prompt (each description followed by ', ') "
                         "or its hand-written test prompts (descriptions joined)")
    ev.add_argument("--out", default="runs/eval", help="folder for results.json and results.md")
    ev.add_argument("--resume", action="store_true",
                    help="keep the (agent, environment) results already in --out (same settings required), run the rest")
    ev.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--suite", choices=SUITES, default=None,
                    help="evaluate on a test suite instead of --envs: glam-generalisation = GLAM's held-out "
                         "pairs, renamed objects, invented words, rephrased goals, new action words, French; "
                         "world-model = the LM (--model) as a BabyAI-Text world model, few-shot and LoRA-trained, "
                         "and as a lookahead planner's simulator (the world-model recipe's cpu preset)")
    ev.add_argument("--tests", type=_csv, default=None,
                    help="with --suite: run only these of its tests (e.g. original,renamed-objects,french)")
    ev.add_argument("--policy", default=None,
                    help="the trained policy the glam agents run: a `llmrl train glam` run folder or a policy "
                         "shipped with llmrl (default: glam-cpu; see llmrl.policies); it brings its own "
                         "model, prompt and scoring, and a --suite is built on its level")

    # `llmrl train ...` is parsed by train_parser(), once the recipe is known; this entry is for --help.
    sub.add_parser("train", add_help=False,
                   help="train with a recipe: `llmrl train --list`, `llmrl train NAME --help`")

    pl = sub.add_parser("plot", help="plot runs' success vs env steps (PNG) and write an HTML report")
    pl.add_argument("runs", nargs="+", help="run folders (or folders holding run folders)")
    pl.add_argument("--references", type=_csv, default=[],
                    help="comma-separated `llmrl eval` results (folders or results.json) drawn as horizontal lines")
    pl.add_argument("--out", default="runs/report", help="folder for plot.png, losses.png and report.html")
    pl.add_argument("--title", default=None)
    pl.add_argument("--metric", default="success_rate",
                    help="progress.csv column to plot: success_rate (GLAM), achievements or crafter_score (ELLM), ...")
    pl.add_argument("--window", type=float, default=100, help="episodes in the rolling success window")

    sv = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API (scoring, generation, embeddings)")
    sv.add_argument("model", help="LM name, folder or .gguf (as --model elsewhere)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless --allow-remote)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--name", default=None, help="the model name clients send (default: the model's)")
    sv.add_argument("--dtype", default="auto", help="auto (bf16 where the CPU has it), bf16 or fp32")
    sv.add_argument("--enable-lora", action="store_true",
                    help="load LoRA adapters at run time (vLLM's /v1/load_lora_adapter), e.g. a learner's")
    sv.add_argument("--allow-remote", action="store_true",
                    help="bind a non-loopback address: the server has no authentication, so only on a trusted network")

    da = sub.add_parser("data", help="make D4RL-style offline datasets from a seed (cached; exported to Minari)")
    dsub = da.add_subparsers(dest="data_command", required=True)
    mk = dsub.add_parser("make", help="make (or find in the cache) datasets <task>-<quality>, e.g. pendulum-medium")
    mk.add_argument("names", nargs="+", help="datasets: <task>-<quality>; `llmrl data list` names them")
    mk.add_argument("--seed", type=int, default=0, help="behaviour-agent and data seed")
    mk.add_argument("--sac-steps", type=int, default=None, help="online SAC steps of the behaviour agent (task default)")
    mk.add_argument("--dataset-steps", type=int, default=None, help="steps per dataset (task default)")
    mk.add_argument("--root", default=None, help="dataset folder (default: $LLMRL_CACHE_DIR/datasets)")
    mk.add_argument("--minari", action="store_true",
                    help="also export each to Minari (llmrl/<task>/<quality>-v0 under $MINARI_DATASETS_PATH)")
    dsub.add_parser("list", help="the tasks and qualities `llmrl data make` knows, with their budgets")
    return parser


# ------------------------------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace) -> int:
    import json

    from llmrl.data import d4rl

    if args.data_command == "list":
        for task, spec in d4rl.TASKS.items():
            print(f"{task:12s} {spec.env_id:16s} SAC {spec.sac_steps} steps, {spec.dataset_steps} steps per set: "
                  + ", ".join(f"{task}-{q}" for q in d4rl.QUALITIES))
        return 0
    for name in args.names:
        d4rl.parse_name(name)  # every name checked before any work
    for name in args.names:
        data = d4rl.load(name, args.seed, sac_steps=args.sac_steps, dataset_steps=args.dataset_steps, root=args.root,
                         progress=lambda m: print(m, file=sys.stderr))
        print(json.dumps({**d4rl.summary(data),
                          "path": str(d4rl.path(name, args.seed, args.sac_steps, args.dataset_steps, args.root))}))
        if args.minari:
            task, quality = d4rl.parse_name(name)
            dataset_id = f"llmrl/{task}/{quality}-s{args.seed}-{d4rl.VERSION}"
            data.to_minari(dataset_id, algorithm_name="SB3 SAC (D4RL-style)", description=data.metadata["command"])
            print(f"exported to Minari as {dataset_id}")
    return 0


# ------------------------------------------------------------------------------------- train
def train_parser(name: str, module: types.ModuleType) -> argparse.ArgumentParser:
    """``llmrl train NAME``'s flags: the run's folder and one flag per (dotted) config field,
    whose help shows each preset's value."""
    from llmrl.config import flat_fields, get_field

    presets = module.PRESETS
    doc = (module.__doc__ or "").strip().splitlines()[0]
    p = argparse.ArgumentParser(prog=f"llmrl train {name}", description=doc)
    p.add_argument("--preset", default="cpu" if "cpu" in presets else next(iter(presets)), choices=list(presets),
                   help="named configuration to start from")
    p.add_argument("--out", required=True, help="folder the recipe writes (must be new unless --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run(s) in --out from their last checkpoint (same settings required); "
                        "checkpoints are read as your own trusted files")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    stages = getattr(module, "STAGES", None)
    if stages:
        p.add_argument("--stage", default="all", choices=["all", *stages],
                       help="run one stage (its inputs must exist) or all; finished stages are reused")
    if any(f.name == "ray.address" for f in flat_fields(module.Config)):
        p.add_argument("--ray", nargs="?", const="local", default=None, dest="ray_shorthand", metavar="ADDRESS",
                       help="run on Ray (pip install 'llmrl[ray]'): a local Ray, or the cluster at ADDRESS; "
                            "the same as --ray.address (the ray.* fields below say how)")
    group = p.add_argument_group(f"{module.Config.__name__} fields (override the preset)")
    for f in flat_fields(module.Config):
        values = "; ".join(f"{k}: {_show(get_field(v, f.name))}" for k, v in presets.items())
        flag = "--" + f.name.replace("_", "-")
        parse, metavar = _parser_for(f.type)
        group.add_argument(flag, dest=f.name, type=parse, default=None, metavar=metavar,
                           help=f"{f.doc} [{values}]".replace("%", "%%").strip())
    return p


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _parser_for(tp: Any) -> tuple[Any, str | None]:
    """(argparse type, metavar) for a config field's annotation."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        parse, metavar = _parser_for(inner)
        return (lambda text: None if text.lower() in ("none", "") else parse(text)), metavar
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else str
        return (lambda text: tuple(item(x) for x in _csv(text))), "A,B,..."
    if tp is bool:
        return _bool, "BOOL"
    return tp, None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def cmd_train(argv: list[str]) -> int:
    from llmrl import recipes

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: llmrl train --list | llmrl train NAME [--preset P] --out FOLDER [--resume] [--FIELD VALUE ...]\n\n"
              "Recipes (llmrl train NAME --help lists a recipe's fields):")
        for r in recipes.RECIPES.values():
            print(f"  {r.name:<14} {r.summary}")
        return 0
    if argv[0] == "--list":
        for r in recipes.RECIPES.values():
            try:
                presets = ", ".join(r.load().PRESETS)
            except ImportError as e:
                presets = f"unavailable: {e}"
            print(f"{r.name:<14} {r.summary}\n{'':<14} presets: {presets}")
        return 0
    try:
        module = recipes.load(argv[0])
    except ValueError as e:
        raise UsageError(str(e)) from None
    args = train_parser(argv[0], module).parse_args(argv[1:])
    from llmrl.config import config_from, flat_fields
    from llmrl.runs import COMMAND

    overrides = {f.name: getattr(args, f.name) for f in flat_fields(module.Config) if getattr(args, f.name) is not None}
    if getattr(args, "ray_shorthand", None) is not None:
        overrides["ray.address"] = args.ray_shorthand
    config = config_from(module.PRESETS, args.preset, overrides)
    COMMAND.set("llmrl train " + " ".join(argv))
    stage = getattr(args, "stage", "all")
    run = module.run if stage == "all" else module.STAGES[stage]
    result = run(config, args.out, resume=args.resume, progress=not args.quiet)
    print(result.summary())
    return 0


# ------------------------------------------------------------------------------------- eval
def _make_agent(kind: str, args: argparse.Namespace, lm_factory, policy_factory, actions: Sequence[str],
                name: str | None = None):
    from llmrl.agents import BotAgent, RandomAgent

    if kind == "random":
        return RandomAgent(seed=args.seed)
    if kind == "bot":
        return BotAgent()
    if kind in GLAM_MODES:
        from llmrl.recipes.glam import policy_agent

        lm, config = policy_factory()
        return policy_agent(lm, config, GLAM_MODES[kind], tuple(actions), seed=args.seed)
    from llmrl.roles import LLMPolicyAgent

    return LLMPolicyAgent(lm_factory(), actions, greedy=kind == "llm", normalise_length=args.normalise_length,
                          n_observations=args.n_observations, seed=args.seed, name=name or kind,
                          prompt_style=args.prompt_style)


def _eval_cases(args: argparse.Namespace, base_env_id: str | None):
    """(name in tables, make_env, action strings) for each environment to evaluate on."""
    import gymnasium as gym

    import llmrl.envs as envs
    from llmrl.envs.babyai_text import ACTIONS

    if args.suite == "glam-generalisation":
        from llmrl.envs.text_variants import glam_generalisation_suite, make_variant_env

        suite = glam_generalisation_suite(base_env_id or args.envs[0])
        names = [v.name for v in suite]
        unknown = sorted(set(args.tests or ()) - set(names))
        if unknown:
            raise UsageError(f"unknown test(s) {', '.join(unknown)} in {args.suite}: choose from {', '.join(names)}")
        return [(f"{v.env_id.removeprefix('BabyAI-Text-')}:{v.name}", lambda v=v: make_variant_env(v), v.actions)
                for v in suite if not args.tests or v.name in args.tests]
    for e in args.envs:
        if e not in envs.TEXT_ENV_IDS:
            raise UsageError(f"unknown environment {e!r}: choose from {', '.join(envs.TEXT_ENV_IDS)}")
    return [(e, lambda e=e: gym.make(e), ACTIONS) for e in args.envs]


def _lm_factory(args: argparse.Namespace, model_name: str):
    """A function that loads the zero-shot LM on first use (no LM loads when only random and bot run)."""
    lm = None

    def get():
        nonlocal lm
        if lm is None:
            # dtype is the hf backend's option; servers and llama.cpp fix their own precision.
            from llmrl.lm import load_model

            kwargs: dict[str, Any] = {} if model_name.startswith(("openai:", "llamacpp:")) else {"dtype": args.dtype}
            if model_name.startswith("openai:"):
                kwargs.update({k: v for k, v in (("timeout", args.lm_timeout), ("max_retries", args.lm_retries))
                               if v is not None})
            lm = load_model(model_name, **kwargs)
            if not args.no_cache:
                from llmrl.lm.cache import CachedLM

                lm = CachedLM(lm, args.cache_file)
        return lm

    return get


def _policy_factory(args: argparse.Namespace):
    """A function that loads the trained GLAM policy (``--policy``) on first use: (its LM, its config)."""
    loaded = None

    def get():
        nonlocal loaded
        if loaded is None:
            from llmrl.recipes.glam import cached_policy_lm, load_trained_policy

            policy, config = load_trained_policy(args.policy)
            loaded = (policy.lm if args.no_cache else cached_policy_lm(policy, config, args.cache_file), config)
        return loaded

    return get


def cmd_eval(args: argparse.Namespace) -> int:
    """Every (environment, agent) pair in turn; results are written after each pair (see
    :func:`llmrl.evaluation.previous_results` for what ``--resume`` keeps)."""
    from tqdm import tqdm

    from llmrl.evaluation import evaluate, markdown_table, previous_results, write_results
    from llmrl.lm import DEFAULT_MODEL
    from llmrl.runs import check_output_folder

    if args.suite == "world-model":  # a study with its own protocol: the world-model recipe
        from llmrl.recipes import world_model

        config = world_model.config_from("cpu", **({"model": args.model} if args.model else {}))
        print(world_model.run(config, args.out, resume=args.resume, progress=not args.quiet).summary())
        return 0
    for a in args.agents:
        if a not in AGENTS:
            raise UsageError(f"unknown agent {a!r}: choose from {', '.join(AGENTS)}")
    if args.episodes < 1 or args.n_envs < 1 or args.n_observations < 1:
        raise UsageError("--episodes, --n-envs and --n-observations must be at least 1")
    if (args.lm_timeout is not None and args.lm_timeout <= 0) or (args.lm_retries is not None and args.lm_retries < 0):
        raise UsageError("--lm-timeout must be positive and --lm-retries at least 0")
    model_name, policy_config = args.model or DEFAULT_MODEL, None
    zero_shot, trained = {"llm", "llm-sampled"} & set(args.agents), set(GLAM_MODES) & set(args.agents)
    if trained or args.policy:  # a trained policy brings its own model, prompt and scoring
        from llmrl.policies import resolve_policy
        from llmrl.recipes.glam import read_config

        args.policy = str(resolve_policy(args.policy))
        policy_config = read_config(Path(args.policy))
    cases = _eval_cases(args, policy_config.env_id if policy_config else None)
    out = check_output_folder(args.out)
    meta = {
        "command": "llmrl " + " ".join(args.argv), "model": model_name if zero_shot else None,
        "policy": args.policy if trained else None, "suite": args.suite, "tests": args.tests, "dtype": args.dtype,
        "normalise_length": args.normalise_length, "n_observations": args.n_observations,
        "prompt_style": args.prompt_style, "episodes": args.episodes, "n_envs": args.n_envs, "seed": args.seed,
        "python": platform.python_version(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    label = policy_config.label if policy_config else "glam"

    def agent_name(kind: str) -> str:
        return f"{label}-{GLAM_MODES[kind]}" if kind in GLAM_MODES else kind
    if (out / "results.json").exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{out} already holds results: pass --resume to keep them and run the rest, --overwrite "
                         "to replace them, or choose another --out")
    lm_agents = bool(zero_shot or trained)
    done, meta = (previous_results(out, meta, lm_agents, lm_prefixes=("llm", label)) if args.resume
                  else ({}, meta))
    pairs = {(agent_name(kind), env_name) for env_name, _, _ in cases for kind in args.agents}
    kept = [r for key, r in done.items() if key not in pairs]  # earlier pairs this command does not run
    if kept:
        print(f"keeping {len(kept)} earlier result(s) this command does not run: "
              + ", ".join(f"{r.agent} on {r.env_id}" for r in kept))
    lm_factory, policy_factory = _lm_factory(args, model_name), _policy_factory(args)
    results = []
    bar = tqdm(total=args.episodes * len(args.agents) * len(cases), disable=args.quiet, unit="ep", dynamic_ncols=True)
    for env_name, make_env, actions in cases:
        for kind in args.agents:
            name = agent_name(kind)
            if (name, env_name) in done:
                results.append(done[(name, env_name)])
                bar.update(args.episodes)
                continue
            agent = _make_agent(kind, args, lm_factory, policy_factory, actions, name)
            bar.set_description(f"{name} on {env_name}")
            before = bar.n
            res = evaluate(agent, make_env, args.episodes, args.n_envs, args.seed, env_name,
                           progress=lambda k: bar.update(before + k - bar.n))
            results.append(res)
            write_results(results + kept, out, meta)
            bar.set_postfix(success=f"{res.summary()['success_rate']:.2f}")
    bar.close()
    write_results(results + kept, out, meta)
    print(markdown_table(results + kept))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from llmrl.report import plot_command

    html = plot_command(args.runs, args.out, args.references, args.title, window_episodes=args.window,
                        metric=args.metric)
    print(f"wrote {html} and its PNGs")
    return 0


# ------------------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    from llmrl.lm import load_model
    from llmrl.lm.serve import LMServer

    lm = load_model(args.model, dtype=args.dtype)
    server = LMServer(lm, host=args.host, port=args.port, model_name=args.name, allow_remote=args.allow_remote,
                      enable_lora=args.enable_lora)
    print(f"serving {server.model_name} at {server.url}/v1 (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# ------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Expected failures (bad input, unusable files or folders, an LM that
    cannot answer) end in one line naming the problem and the fix; ``--debug`` shows the trace."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]
    argv = argv[1:] if debug else argv
    try:
        if argv[:1] == ["train"]:
            return cmd_train(argv[1:])
        args = build_parser().parse_args(argv)
        args.argv = argv
        return {"eval": cmd_eval, "plot": cmd_plot, "serve": cmd_serve, "data": cmd_data}[args.command](args)
    except Exception as e:
        if debug or not _expected(e):
            raise
        raise SystemExit(f"llmrl: {e}") from None


def _expected(e: Exception) -> bool:
    """Errors a user can fix, whose message says how (everything else keeps its traceback)."""
    from llmrl.lm.base import LMError
    from llmrl.sandbox import SandboxUnavailable

    return isinstance(e, (UsageError, ValueError, OSError, LMError, ImportError, SandboxUnavailable))


if __name__ == "__main__":
    sys.exit(main())
