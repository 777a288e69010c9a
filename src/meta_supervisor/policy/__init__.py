"""policy: every tunable of the allocator in one validated object, and its TOML file.

============== ============================================================================
module         what it holds
============== ============================================================================
model          the Policy (pydantic), the Profile names, load_policy, the fingerprint
toml           the one TOML renderer (``policy show --toml``) and the field table
============== ============================================================================
"""

from meta_supervisor.policy.model import Policy, PolicyError, Profile, load_policy
from meta_supervisor.policy.toml import policy_fields, render_toml

__all__ = ["Policy", "PolicyError", "Profile", "load_policy", "policy_fields", "render_toml"]
