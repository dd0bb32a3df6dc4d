# A hand-written shaped reward for Pendulum (the `file` arm of docs/results/reward_code.md): being up
# pays, being up *and* slow pays more, torque costs a little.
import math


def compute_reward(s, a, s_next):
    up = (1 + s_next["cos_theta"]) / 2
    calm = up * math.exp(-s_next["angular_velocity"] ** 2 / 4)
    effort = 0.01 * float(a[0]) ** 2
    return up + calm - effort, {"up": up, "calm": calm, "effort": -effort}
