"""A/B assignment: a user's group is a pure function of a salt and the user id.

md5(salt:user_id) read as a number in [0, 1): below the test share means ``test``. The same user
gets the same group on every request, after every restart and in every snapshot; a new salt starts
a new experiment with fresh groups.
"""

from __future__ import annotations

import hashlib

import numpy as np

GROUPS = ("control", "test")


def hash_unit(user_id: int, salt: str) -> float:
    digest = hashlib.md5(f"{salt}:{int(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_group(user_id: int, salt: str, test_share: float) -> str:
    return "test" if hash_unit(user_id, salt) < test_share else "control"


def assign_groups(user_ids, salt: str, test_share: float) -> np.ndarray:
    """The group of each user id, as an array of "control"/"test"."""
    units = np.fromiter((hash_unit(u, salt) for u in user_ids), dtype=float, count=len(user_ids))
    return np.where(units < test_share, "test", "control").astype(object)
