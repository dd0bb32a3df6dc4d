"""Draw docs/results/img/crafter-text-state.png: a Crafter-Text state, its ELLM caption, and the
goals the LM suggests for it with the explorer's prompt and settings (greedy, 32 tokens).

    python scripts/ellm_state_figure.py docs/results/img/crafter-text-state.png
"""

from __future__ import annotations

import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llmrl.envs.crafter_text import CrafterTextEnv  # noqa: E402
from llmrl.lm import load_model  # noqa: E402
from llmrl.roles.explorer import ExplorerConfig, goal_prompt, parse_goals  # noqa: E402


def main(out: str, seed: int = 2, steps: int = 60) -> None:
    env = CrafterTextEnv(action_set="verb_noun", size=256)
    _, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):  # wander a little so more than grass is in view
        _, _, _, _, info = env.step(int(rng.integers(env.action_space.n)))
    caption = info["caption"]
    lm = load_model("gemma-3-270m")
    config = ExplorerConfig()
    (reply,) = lm.generate([goal_prompt(caption)], max_new_tokens=config.max_new_tokens, stop=["\n\n"])
    goals = parse_goals(reply.texts[0]) or []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 6.2), gridspec_kw={"height_ratios": [3, 1.4]})
    top.imshow(env.render())
    top.axis("off")
    bottom.axis("off")
    text = "\n".join(textwrap.wrap(caption, 52)) + "\n\nLM (gemma-3-270m) suggests:\n" + "\n".join(f"- {g}" for g in goals)
    bottom.text(0, 1, text, va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(caption, goals)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crafter-text-state.png")
