"""RL algorithms: PPO's pieces for LM policies (``ppo``); more come with the recipes."""
