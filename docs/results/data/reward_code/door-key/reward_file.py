# A hand-written staged reward for MiniGrid DoorKey (the `file` arm of docs/results/reward_code.md), in
# Text2Reward's staged style as a potential difference: key, then door, then goal; within a stage,
# getting closer to the stage's target pays.


def potential(s):
    if s["has_key"] < 0.5 and s["door_open"] < 0.5:
        stage, tx, ty = 0, s["key_x"], s["key_y"]
    elif s["door_open"] < 0.5:
        stage, tx, ty = 1, s["door_x"], s["door_y"]
    else:
        stage, tx, ty = 2, s["goal_x"], s["goal_y"]
    distance = abs(s["agent_x"] - tx) + abs(s["agent_y"] - ty)
    return stage - 0.1 * distance


def compute_reward(s, a, s_next):
    progress = potential(s_next) - potential(s)
    at_goal = float(s_next["agent_x"] == s_next["goal_x"] and s_next["agent_y"] == s_next["goal_y"])
    return progress + 2.0 * at_goal, {"progress": progress, "goal": at_goal}
