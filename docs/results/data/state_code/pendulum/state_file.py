# Hand-written state features for Pendulum (the `file` arm of docs/results/state_code.md): the angle itself
# (the observation gives only its cosine and sine), and how far from upright and how fast it is.
import math

import numpy as np


def revise_state(s):
    theta = math.atan2(s[1], s[0])
    return np.concatenate([s, [theta, abs(theta), s[2] * s[2] / 64.0]])


def intrinsic_reward(s):
    return -abs(s[3]) - 0.1 * s[5]
