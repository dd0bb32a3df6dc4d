# Hand-written state features for Reacher (the `file` arm of docs/results/state_code.md): the
# fingertip-target distance and the direction to the target.
import math

import numpy as np


def revise_state(s):
    dx, dy = s[8], s[9]
    distance = math.hypot(dx, dy)
    return np.concatenate([s, [distance, math.atan2(dy, dx)]])


def intrinsic_reward(s):
    return -s[10]
