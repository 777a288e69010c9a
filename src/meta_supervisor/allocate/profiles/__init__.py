"""The allocation profiles, one module each, in one register.

Adding a profile is one module that defines a :class:`~meta_supervisor.allocate.profiles.
base.ProfileMethod` and one line in :data:`PROFILES` (its name is a
:class:`~meta_supervisor.policy.model.Profile` member, so a policy file can select it and the
policy validates it); the pipeline is not edited.
"""

from __future__ import annotations

from meta_supervisor.allocate.profiles import evidence, seed, select
from meta_supervisor.allocate.profiles.base import FactorTable, ProfileFactors, ProfileMethod
from meta_supervisor.policy.model import Profile

__all__ = ["PROFILES", "FactorTable", "ProfileFactors", "ProfileMethod", "method_for"]

PROFILES: dict[Profile, ProfileMethod] = {
    Profile.SEED: seed.METHOD,
    Profile.EVIDENCE: evidence.METHOD,
    Profile.SELECT: select.METHOD,
}


def method_for(profile: Profile) -> ProfileMethod:
    """The registered method of ``profile``."""
    return PROFILES[profile]
