import math
import numpy as np


def compute_reward(s, a, s_next):
    """Fields of s and s_next: s["theta"], s["angular_velocity"], s["cos_theta"], s["sin_theta"]. Returns (reward, dict of terms)."""
    result = 0
    """if(s"theta" in s_next):
        result += 1
    if(s"angular_velocity" in s_next):
        result += s["angular_velocity"]
    if(s"cos_theta" in s_next):
        result += s["cos_theta"]
    if(s"sin_theta" in s_next):
        result += s["sin_theta"]"""
    ans = dict()
    try:
        # 4 activity, no state, action;
        s_next = s["0"]
        d = (s_next - s["0"]) / (s["angular_velocity"] * np.log(3))
        d_squared = math.sqrt(d)
        if (d_squared >= 20):
            del s["s_next"], s["60" in s_next]
            if d_squared < 0:
                result += 1
        pass
    except:
        print(f"Error: landed chase: {s_next}")
    if(result >= 20):
        result += 1

    return result
