"""A/B assignment: salted md5, an even split, stable."""

import numpy as np

from recsys import ab


def test_split_is_within_one_percent_of_half_over_100k_ids():
    groups = ab.assign_groups(np.arange(1, 100_001), "salt-a", 0.5)
    assert abs((groups == "test").mean() - 0.5) < 0.01


def test_share_is_a_setting():
    groups = ab.assign_groups(np.arange(1, 100_001), "salt-a", 0.2)
    assert abs((groups == "test").mean() - 0.2) < 0.01


def test_assignment_is_stable_and_salted():
    ids = np.arange(1, 2_001)
    first = ab.assign_groups(ids, "salt-a", 0.5)
    assert (first == ab.assign_groups(ids, "salt-a", 0.5)).all()
    assert [ab.assign_group(u, "salt-a", 0.5) for u in ids[:50]] == list(first[:50])
    other = ab.assign_groups(ids, "salt-b", 0.5)
    assert 0.4 < (first != other).mean() < 0.6  # a new salt reshuffles about half the users
