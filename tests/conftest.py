"""Shared fixtures. Each real model is loaded once for the whole test run.

A test that uses a real-model fixture (directly or through another fixture) is marked ``slow``;
so is every test marked by hand for loading a model in its body or training for more than a few
seconds. ``pytest -m "not slow"`` runs the rest in a few minutes.
"""

from __future__ import annotations

import pytest

REAL_MODEL_FIXTURES = {"gemma_fp32", "smollm2_fp32"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def gemma_fp32():
    """gemma-3-270m in fp32, for exact comparisons (the scoring-equivalence tolerance is 1e-3)."""
    from llmrl.lm import load_model

    return load_model("gemma-3-270m", dtype="fp32")


@pytest.fixture(scope="session")
def smollm2_fp32():
    """smollm2-135m-instruct in fp32: the small real model for tests that train or generate a lot.
    Roles that train wrap the model in place: take a ``copy.deepcopy`` of it."""
    from llmrl.lm import load_model

    return load_model("smollm2-135m-instruct", dtype="fp32")


class CrafterScene:
    """Builds Crafter states by hand: a cleared local view, a chosen cell in front of the player."""

    @staticmethod
    def clear(env, material="grass"):
        """Every cell of the 9x7 view becomes ``material``, every creature but the player leaves,
        needs are full, the inventory is empty and the player faces down."""
        from crafter import objects

        from llmrl.envs import crafter_text as ct

        (px, py), (w, h) = env.player.pos, ct.VIEW
        for x in range(px - w // 2, px + w // 2 + 1):
            for y in range(py - h // 2, py + h // 2 + 1):
                env.world[(x, y)] = material
        for obj in list(env.world.objects):
            if not isinstance(obj, objects.Player):
                env.world.remove(obj)
        for k in ct.ITEMS:
            env.player.inventory[k] = 9 if k in ct.STATUS_WORDS else 0
        env.player.facing = (0, 1)

    @staticmethod
    def facing(env):
        return (env.player.pos[0] + env.player.facing[0], env.player.pos[1] + env.player.facing[1])


@pytest.fixture(scope="session")
def scene():
    return CrafterScene()
