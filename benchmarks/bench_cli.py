"""Start-up time of the command line: what a user waits for before anything runs.

    python benchmarks/bench_cli.py --repeats 5

Times, as whole processes side by side (median of N): ``llmrl --help``, ``llmrl train --list``,
``llmrl train glam --help``, and ``python -c "import torch"`` as the reference a command pays when
it loads torch. Goal: ``llmrl --help`` well under a second (it imports no torch).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "llmrl --help": [sys.executable, "-m", "llmrl.cli", "--help"],
    "llmrl train --list": [sys.executable, "-m", "llmrl.cli", "train", "--list"],
    "llmrl train glam --help": [sys.executable, "-m", "llmrl.cli", "train", "glam", "--help"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved, so a slow moment hits every command alike
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    torch_s = statistics.median(times['python -c "import torch"'])
    print("| command | median (s) | vs importing torch |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.2f} | {statistics.median(ts) / torch_s:.2f}x |")


if __name__ == "__main__":
    main()
