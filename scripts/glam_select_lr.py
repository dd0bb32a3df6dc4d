"""Print the learning rate of the best sweep run: the highest success over its last 100 training
episodes (training levels only; the held-out evaluation levels never choose a setting), ties
broken by the earlier step at which it reached 0.8. Usage: glam_select_lr.py RUN [RUN ...]"""

import json
import sys

from llmrl.report.plot import load_run, metric_curve, steps_to_reach


def main(paths: list[str]) -> None:
    scored = []
    for path in paths:
        run = load_run(path)
        _, success = metric_curve(run, "success_rate", window=100)
        reach = steps_to_reach(run, 0.8)
        lr = json.load(open(f"{path}/config.json"))["config"]["ppo"]["learning_rate"]
        scored.append((float(success[-1]), -(reach or float("inf")), lr, path))
        print(f"{path}: final success {success[-1]:.3f}, 0.8 reached at {reach}", file=sys.stderr)
    print(max(scored)[2])


if __name__ == "__main__":
    main(sys.argv[1:])
