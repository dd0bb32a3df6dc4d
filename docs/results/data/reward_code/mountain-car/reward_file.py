# A hand-written shaped reward for MountainCarContinuous (the `file` arm of docs/results/reward_code.md):
# height on the hill plus speed, so rocking back and forth pays before the flag is ever reached.
import math


def compute_reward(s, a, s_next):
    height = math.sin(3 * s_next["position"])
    speed = 10 * abs(s_next["velocity"])
    return height + speed, {"height": height, "speed": speed}
