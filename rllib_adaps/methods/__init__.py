"""The six sharing methods, one class each (options, module settings, install plan).

``METHODS`` lists their names in the order used everywhere; ``get_method(name)`` returns the
class, with the closest valid name in the error for a misspelt one.
"""

import difflib
from typing import Dict, Type

from rllib_adaps.methods.adaps import AdaPS, AdaPSOptions
from rllib_adaps.methods.base import (
    InstallPlan,
    MethodOptions,
    PretrainingOptions,
    SharingMethod,
    SharingOptionError,
    apply_plan,
)
from rllib_adaps.methods.fups import FuPS
from rllib_adaps.methods.fups_id import FuPSWithId
from rllib_adaps.methods.nops import NoPS
from rllib_adaps.methods.seps import SePS
from rllib_adaps.methods.snp import SNPOptions, SNPPS

METHOD_CLASSES: Dict[str, Type[SharingMethod]] = {m.name: m for m in (NoPS, FuPS, FuPSWithId, SePS, SNPPS, AdaPS)}
METHODS = tuple(METHOD_CLASSES)


def get_method(name: str) -> Type[SharingMethod]:
    try:
        return METHOD_CLASSES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), METHODS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SharingOptionError(f"Unknown sharing method {name!r}.{hint} Choose one of {list(METHODS)}.") from None


__all__ = [
    "AdaPS", "AdaPSOptions", "FuPS", "FuPSWithId", "InstallPlan", "METHODS", "METHOD_CLASSES", "MethodOptions", "NoPS",
    "PretrainingOptions", "SNPOptions", "SNPPS", "SePS", "SharingMethod", "SharingOptionError", "apply_plan", "get_method",
]
