"""One GLAM cpu-preset run on the GPU machine (device glue; the same as `llmrl train glam`)."""
import sys
import time

from llmrl.recipes.glam import config_from, run

seed, init, out, model = sys.argv[1:5]
label = "glam-cpu" if init == "pretrained" else "glam-cpu-random-init"
t = time.time()
run(config_from("cpu", seed=int(seed), init=init, label=label, model=model), out, progress=False)
print(f"{out}: {time.time() - t:.0f} s", flush=True)
