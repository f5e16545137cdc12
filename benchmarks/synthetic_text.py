"""Made-up ski-forum sentences for the benchmarks that need text of a forum's shape, not its meaning."""

from __future__ import annotations

import random

WORDS = (
    "ski",
    "wax",
    "edge",
    "base",
    "boot",
    "binding",
    "powder",
    "groomer",
    "park",
    "jump",
    "rail",
    "mogul",
    "slush",
    "ice",
    "crust",
    "tune",
    "layer",
    "merino",
    "shell",
    "glove",
    "goggle",
    "helmet",
    "lift",
    "resort",
    "trail",
    "chair",
    "carve",
    "turn",
    "pole",
    "rocker",
    "camber",
    "flex",
    "length",
    "width",
    "sidecut",
    "stance",
    "knee",
    "calf",
    "sock",
    "liner",
    "footbed",
    "heel",
    "toe",
)


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + "."
