"""The six sharing methods, one class each, and ``SharingSpec``, the method a run uses.

``METHODS`` lists their names in the order used everywhere; ``get_method(name)`` returns the
class, with the closest valid name in the error for a misspelt one.
"""

from rllib_adaps.core.identity import VAEOptions
from rllib_adaps.core.options import SharingOptionError
from rllib_adaps.methods.adaps import AdaPS, AdaPSOptions
from rllib_adaps.methods.base import InstallPlan, MethodOptions, PretrainingOptions, SharingMethod, apply_plan
from rllib_adaps.methods.fups import FuPS
from rllib_adaps.methods.fups_id import FuPSWithId
from rllib_adaps.methods.nops import NoPS
from rllib_adaps.methods.seps import SePS
from rllib_adaps.methods.snp import SNPPS, SNPOptions
from rllib_adaps.methods.spec import METHOD_CLASSES, METHOD_KEY, METHODS, SharingSpec, get_method

__all__ = [
    "AdaPS", "AdaPSOptions", "FuPS", "FuPSWithId", "InstallPlan", "METHODS", "METHOD_CLASSES", "METHOD_KEY", "MethodOptions",
    "NoPS", "PretrainingOptions", "SNPOptions", "SNPPS", "SePS", "SharingMethod", "SharingOptionError", "SharingSpec",
    "VAEOptions", "apply_plan", "get_method",
]
