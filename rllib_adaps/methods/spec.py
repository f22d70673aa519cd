"""``SharingSpec``: a sharing method and its typed options, built and validated once.

It is the one object that says how a run shares parameters. ``configure_sharing`` builds it
from keyword arguments; on the manual route the module builds it from its ``model_config``
(``SharingSpec.from_model_config``). It travels inside the module's ``model_config`` as plain
keys (``sharing_method`` and the method's options: ``to_model_config``), so every Learner,
EnvRunner and checkpoint carries it and reads it back the same way. The engine reads only its
``EngineLayout``; the callback reads the spec from the module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Type

from rllib_adaps.core.layers import EngineLayout
from rllib_adaps.core.options import SharingOptionError, did_you_mean, option_names, options_from_dict
from rllib_adaps.methods.adaps import AdaPS
from rllib_adaps.methods.base import MethodOptions, SharingMethod
from rllib_adaps.methods.fups import FuPS
from rllib_adaps.methods.fups_id import FuPSWithId
from rllib_adaps.methods.nops import NoPS
from rllib_adaps.methods.seps import SePS
from rllib_adaps.methods.snp import SNPPS

METHOD_CLASSES: Dict[str, Type[SharingMethod]] = {m.name: m for m in (NoPS, FuPS, FuPSWithId, SePS, SNPPS, AdaPS)}
#: Method names in the order used everywhere (a checkpoint records the method by its position).
METHODS = tuple(METHOD_CLASSES)
#: The ``model_config`` key that names the method.
METHOD_KEY = "sharing_method"


def get_method(name: str) -> Type[SharingMethod]:
    """The class of method ``name``; a misspelt name gets the closest valid one in the error."""
    if isinstance(name, str) and name in METHOD_CLASSES:
        return METHOD_CLASSES[name]
    raise SharingOptionError(f"Unknown sharing method {name!r}.{did_you_mean(name, METHODS)} Choose one of {list(METHODS)}.")


@dataclasses.dataclass(frozen=True)
class SharingSpec:
    """A method name and its options (the method's ``Options`` dataclass, validated)."""

    method: str
    options: MethodOptions

    def __post_init__(self):
        method_class = get_method(self.method)
        if type(self.options) is not method_class.Options:
            raise SharingOptionError(f"Sharing method {self.method!r} takes {method_class.Options.__name__}, "
                                     f"got {type(self.options).__name__}.")

    @classmethod
    def build(cls, method: str, options: Optional[Mapping[str, Any]] = None) -> "SharingSpec":
        """From a method name and a dict of its options (nested ``vae`` as a dict)."""
        method_class = get_method(method)
        return cls(method, options_from_dict(method_class.Options, options or {}, f"sharing method {method!r}"))

    @property
    def method_class(self) -> Type[SharingMethod]:
        return METHOD_CLASSES[self.method]

    def for_agents(self, num_agents: int, space_groups: Optional[Sequence[int]] = None) -> SharingMethod:
        """The method for ``num_agents`` agents (checks the options that depend on them);
        ``space_groups`` as in ``SharingMethod``."""
        return self.method_class(self.options, num_agents=num_agents, space_groups=space_groups)

    def with_run_seed(self, run_seed: int) -> "SharingSpec":
        """This spec with every seed option left open derived from the run's seed."""
        return dataclasses.replace(self, options=self.options.with_run_seed(run_seed))

    def layout(self, num_agents: int, hidden_sizes: Sequence[int], space_groups: Optional[Sequence[int]] = None) -> EngineLayout:
        return self.for_agents(num_agents, space_groups).layout(hidden_sizes)

    # ------------------------------------------------------------ in a model_config
    def to_model_config(self) -> Dict[str, Any]:
        """``sharing_method`` and every option (defaults included), as plain values."""
        return {METHOD_KEY: self.method, **dataclasses.asdict(self.options)}

    @classmethod
    def option_keys(cls, method: str) -> list:
        return option_names(get_method(method).Options)

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any], default_method: str = "fups") -> "SharingSpec":
        """The spec a ``model_config`` describes: its ``sharing_method`` (or ``default_method``)
        and those of its keys that are options of that method; other keys are left to the caller."""
        method = model_config.get(METHOD_KEY) or default_method
        names = cls.option_keys(method)
        return cls.build(method, {k: v for k, v in model_config.items() if k in names})


def all_option_keys() -> set:
    """Every option name of every method (a ``model_config`` key that is one is not RLlib's)."""
    return {name for m in METHOD_CLASSES.values() for name in option_names(m.Options)}
