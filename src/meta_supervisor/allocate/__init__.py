"""allocate: statistics, confidence, tails and a policy in; a decision with reasons out. Pure.

============== ============================================================================
module         what it holds
============== ============================================================================
core           the pipeline: gates, the profile's factors, cap, pull-back, gross cap,
               stability, rounding (:func:`allocate`, :func:`allocate_frames`)
inputs         what the allocation reads besides statistics: Tail, Confidence, Override
numbers        the one number parser (absent, usable, or unusable with the reason)
fleet          the inputs as arrays, from stats dicts or frames
gates          the one table of safety gates (also the baselines' eligibility)
profiles       the register of profiles (``seed``, ``evidence``), one module each
portfolio      water-filling cap, gross cap, stability step, rounding down
explain        per-agent explanations and the portfolio's headline
decision       the frozen Decision and its canonical JSON
============== ============================================================================
"""

from meta_supervisor.allocate.core import allocate, allocate_frames
from meta_supervisor.allocate.decision import Decision, canonical_json, fingerprint
from meta_supervisor.allocate.gates import SAFETY_GATES, eligible_agents
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.allocate.profiles import PROFILES, ProfileMethod

__all__ = [
    "PROFILES",
    "SAFETY_GATES",
    "Confidence",
    "Decision",
    "Override",
    "ProfileMethod",
    "Tail",
    "allocate",
    "allocate_frames",
    "canonical_json",
    "eligible_agents",
    "fingerprint",
]
