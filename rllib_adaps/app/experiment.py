"""Classic RLlib tuned-example files (YAML, JSON, Python) turned into an AlgorithmConfig.

File format (YAML shown; JSON is the same structure)::

    adaps-lbf:                      # experiment name
      run: PPO                      # any RLlib algorithm: PPO, APPO, IMPALA, ...
      env: lbf                      # registered env name (lbf, crware, bps, or your own)
      stop: {num_env_steps_sampled_lifetime: 200000}
      sharing:                      # this package's place in the file
        method: adaps               # nops | fups | fups_id | seps | snp | adaps
        num_clusters: null          # any configure_sharing / PretrainingOptions option
        fast_path: false            # optional; default automatic (rllib_adaps.rllib.fast_path)
      config:                       # AlgorithmConfig keys (as in config.to_dict())
        env_config: {levels: [1, 1, 2, 2]}
        lr: 0.0003
        model_config: {fcnet_hiddens: [64, 64]}
      checkpoint_config: {checkpoint_frequency: 10, checkpoint_at_end: true}

A Python file defines ``config`` (an AlgorithmConfig whose env is set) and optionally
``stop``, ``sharing`` and ``name``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import runpy
from pathlib import Path
from typing import Any, Dict, Optional

import yaml
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.registry import ALGORITHMS

from rllib_adaps.core.options import SharingOptionError, did_you_mean
from rllib_adaps.envs import ENV_CLASSES, EnvConfigError
from rllib_adaps.methods import get_method
from rllib_adaps.rllib.configure import configure_sharing

EXPERIMENT_KEYS = ("run", "env", "stop", "config", "sharing", "checkpoint_config", "num_samples", "storage_path")
CHECKPOINT_KEYS = ("checkpoint_frequency", "checkpoint_at_end", "num_to_keep")


class ExperimentError(ValueError):
    """A user error in an experiment file: the message says what to change."""


@dataclasses.dataclass
class Experiment:
    name: str
    config: AlgorithmConfig
    stop: Dict[str, Any]
    sharing: Dict[str, Any]
    checkpoint_config: Dict[str, Any]
    num_samples: int = 1
    storage_path: Optional[str] = None


def _closest(word: str, options) -> str:
    return did_you_mean(word, options, cutoff=0.5)


def check_env_name(env: Any, source: str, where: str = "key 'env'") -> None:
    """An env given by name must be registered with Tune (this package's are) or with Gymnasium."""
    if not isinstance(env, str):
        return
    from ray.tune.registry import ENV_CREATOR, _global_registry

    if env in ENV_CLASSES and not _global_registry.contains(ENV_CREATOR, env):
        from rllib_adaps.envs import register_envs

        register_envs()  # registrations live in the Ray instance: restore them after a restart
    if _global_registry.contains(ENV_CREATOR, env):
        return
    try:
        import gymnasium

        if env in gymnasium.envs.registry:
            return
    except ImportError:  # pragma: no cover
        pass
    raise ExperimentError(
        f"Unknown env '{env}' in {source} ({where}).{_closest(env, ENV_CLASSES)} This package's envs: "
        f"{sorted(ENV_CLASSES)}; other envs must be registered with ray.tune.register_env() (in a .py experiment file)."
    )


def check_checkpoint_config(values: Dict[str, Any], source: str) -> None:
    for key in values:
        if key not in CHECKPOINT_KEYS:
            raise ExperimentError(f"Unknown checkpoint_config key '{key}' in {source}.{_closest(key, CHECKPOINT_KEYS)} Valid: {list(CHECKPOINT_KEYS)}.")
    frequency = values.get("checkpoint_frequency", 0)
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
        raise ExperimentError(f"'checkpoint_config.checkpoint_frequency' in {source} must be an integer >= 0 (0: only at the end), got {frequency!r}.")
    keep = values.get("num_to_keep")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ExperimentError(f"'checkpoint_config.num_to_keep' in {source} must be an integer >= 1 or null (keep all), got {keep!r}.")
    if not isinstance(values.get("checkpoint_at_end", True), bool):
        raise ExperimentError(f"'checkpoint_config.checkpoint_at_end' in {source} must be true or false, got {values['checkpoint_at_end']!r}.")


#: Stop keys most runs use (shown when a stop key is not one that training reports).
COMMON_STOP_KEYS = ("num_env_steps_sampled_lifetime", "training_iteration", "time_total_s", "env_runners/episode_return_mean")
#: Top-level values of a training result (Tune's and RLlib's), as PPO, APPO and IMPALA report them.
TOP_LEVEL_RESULTS = ("training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore", "iterations_since_restore",
                     "num_env_steps_sampled_lifetime", "num_env_steps_trained_lifetime", "num_agent_steps_sampled_lifetime",
                     "num_agent_steps_trained_lifetime", "num_episodes_lifetime", "num_training_step_calls_per_iteration")
#: Result groups whose nested keys (``group/...``) may be stop keys.
RESULT_GROUPS = ("env_runners", "learners", "evaluation", "timers", "fault_tolerance", "perf", "identity_pretraining", "sharing")


def _stop_key_problem(key: str, metric_names: set) -> bool:
    """True if training never reports ``key`` (``env_runners/<name>`` must be an RLlib metric)."""
    parts = str(key).split("/")
    if len(parts) == 1:
        return key not in TOP_LEVEL_RESULTS
    if parts[0] not in RESULT_GROUPS:
        return True
    runner_metric = parts[1] if parts[0] == "env_runners" else parts[2] if parts[:2] == ["evaluation", "env_runners"] and len(parts) > 2 else None
    return runner_metric is not None and runner_metric not in metric_names


def check_stop(stop: Any, source: str) -> Dict[str, Any]:
    """Stop criteria must name values that training reports (Tune silently never stops on an
    unknown key), each with a number."""
    import ray.rllib.utils.metrics as rllib_metrics

    if not isinstance(stop, dict):
        raise ExperimentError(f"'stop' in {source} must be a mapping of result keys to values, got {stop!r}.")
    metric_names = {v for k, v in vars(rllib_metrics).items() if k.isupper() and isinstance(v, str)}
    for key, value in stop.items():
        if _stop_key_problem(key, metric_names):
            candidates = [*COMMON_STOP_KEYS, *TOP_LEVEL_RESULTS, *(f"env_runners/{m}" for m in metric_names)]
            raise ExperimentError(
                f"Unknown stop key {key!r} in {source}: training never reports it, so the run would never stop."
                f"{did_you_mean(key, candidates)} Common stop keys: {', '.join(COMMON_STOP_KEYS)}; nested keys start "
                f"with one of {list(RESULT_GROUPS)}."
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExperimentError(f"Stop value of {key!r} in {source} must be a number, got {value!r}.")
    return dict(stop)


def load_file(path: str | Path) -> Dict[str, Any] | AlgorithmConfig:
    """Reads a YAML/JSON experiment dict, or runs a Python file and returns its namespace."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"Experiment file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err)
            raise ExperimentError(f"YAML syntax error in {path}{where}: {problem}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ExperimentError(f"JSON syntax error in {path} at line {err.lineno}, column {err.colno}: {err.msg}") from None
    elif suffix == ".py":
        namespace = runpy.run_path(str(path))
        if not isinstance(namespace.get("config"), AlgorithmConfig):
            raise ExperimentError(f"{path} must define `config`, an AlgorithmConfig (e.g. PPOConfig().environment(...)).")
        return namespace
    else:
        raise ExperimentError(f"Unsupported experiment file type '{suffix}': use .yaml, .yml, .json or .py.")
    if not isinstance(data, dict) or len(data) != 1 or not isinstance(next(iter(data.values())), dict):
        raise ExperimentError(f"{path} must hold exactly one experiment: {{name: {{run: ..., env: ..., config: ...}}}}.")
    return data


def algorithm_config(algo: str) -> AlgorithmConfig:
    """The default AlgorithmConfig of an RLlib algorithm by name (case-insensitive)."""
    by_upper = {name.upper(): name for name in ALGORITHMS}
    if str(algo).upper() not in by_upper:
        raise ExperimentError(f"Unknown algorithm '{algo}'.{_closest(algo, ALGORITHMS)} Known: {sorted(ALGORITHMS)}.")
    return ALGORITHMS[by_upper[str(algo).upper()]]()[1]


def apply_config_dict(config: AlgorithmConfig, values: Dict[str, Any], where: str) -> AlgorithmConfig:
    """Sets ``values`` (``config.to_dict()`` keys) on ``config``; unknown keys are errors."""
    settable = {n for n in dir(type(config)) if isinstance(getattr(type(config), n, None), property) and getattr(type(config), n).fset}
    valid = {k for k in vars(config) if not k.startswith("_")} | {n for n in settable if not n.startswith("_")} | {"model_config", "lambda"}
    for key in values:
        translated = config._translate_special_keys(key, warn_deprecated=False)
        if key not in valid and translated not in valid:
            raise ExperimentError(f"Unknown config key '{key}' in {where}.{_closest(key, valid)}")
    values = dict(values)
    model_config = values.pop("model_config", None)
    config.update_from_dict(values)
    if model_config is not None:
        if not isinstance(model_config, dict):
            raise ExperimentError(f"'model_config' in {where} must be a mapping, got {model_config!r}.")
        config.rl_module(model_config=model_config)
    return config


def parse_experiment(data: Dict[str, Any] | Dict[str, Any], source: str = "<dict>") -> Experiment:
    """Turns a loaded file into an Experiment (sharing not yet applied)."""
    if isinstance(data.get("config"), AlgorithmConfig):  # Python file namespace
        config = data["config"]
        return Experiment(
            name=data.get("name") or Path(source).stem,
            config=config.copy(copy_frozen=False),
            stop=check_stop(data.get("stop") or {}, source),
            sharing=dict(data.get("sharing") or {}),
            checkpoint_config=dict(data.get("checkpoint_config") or {}),
        )
    name, spec = next(iter(data.items()))
    for key in spec:
        if key not in EXPERIMENT_KEYS:
            raise ExperimentError(f"Unknown key '{key}' in experiment '{name}' of {source}.{_closest(key, EXPERIMENT_KEYS)} Valid keys: {list(EXPERIMENT_KEYS)}.")
    for required in ("run", "env"):
        if required not in spec:
            raise ExperimentError(f"Experiment '{name}' in {source} needs '{required}'.")
    config = algorithm_config(spec["run"])
    if not isinstance(spec.get("config") or {}, dict):
        raise ExperimentError(f"'config' in {source} must be a mapping of AlgorithmConfig keys, got {spec['config']!r}.")
    config_values = dict(spec.get("config") or {})
    env_config = config_values.pop("env_config", None) or {}
    if not isinstance(env_config, dict):
        raise ExperimentError(f"'config.env_config' in {source} must be a mapping, got {env_config!r}.")
    check_env_name(spec["env"], source)
    config.environment(spec["env"], env_config=env_config)
    apply_config_dict(config, config_values, f"'{name}.config' of {source}")
    checkpoint_config = dict(spec.get("checkpoint_config") or {})
    check_checkpoint_config(checkpoint_config, source)
    stop = check_stop(spec.get("stop") or {}, source)
    num_samples = spec.get("num_samples", 1)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ExperimentError(f"'num_samples' in {source} must be an integer >= 1, got {num_samples!r}.")
    return Experiment(
        name=name,
        config=config,
        stop=dict(stop),
        sharing=dict(spec.get("sharing") or {}),
        checkpoint_config=checkpoint_config,
        num_samples=num_samples,
        storage_path=spec.get("storage_path"),
    )


def build_experiment(path: str | Path) -> Experiment:
    """Loads, validates and applies the sharing method of an experiment file."""
    experiment = parse_experiment(load_file(path), str(path))
    check_env_name(experiment.config.env, str(path))
    if not isinstance(experiment.sharing, dict):
        raise ExperimentError(f"'sharing' in {path} must be a mapping such as {{method: adaps, num_clusters: 3}}, got {experiment.sharing!r}.")
    sharing = dict(experiment.sharing)
    method = sharing.pop("method", None)
    if method is not None:
        try:
            get_method(method)
        except SharingOptionError as err:
            raise ExperimentError(f"In {path}, key 'sharing.method': {err}") from None
        try:
            experiment.config = configure_sharing(experiment.config, method, **sharing)
        except (ValueError, TypeError) as err:
            raise _located(err, path, method, sharing) from None
    elif sharing:
        raise ExperimentError(f"'sharing' in {path} has options {sorted(sharing)} but no 'method'.")
    return experiment


def _located(err: Exception, path, method: str, sharing: Dict[str, Any]) -> ExperimentError:
    """The error of ``configure_sharing`` with the file and the key it comes from."""
    message = str(err)
    named = getattr(err, "key", None)  # an unknown option names itself; then only that one is meant
    keys = [named] if named else [k for k in sharing if re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", message)]
    if keys:
        where = ", ".join(f"key 'sharing.{k}'" + (f" (value {sharing[k]!r})" if k in sharing else "") for k in keys)
    elif isinstance(err, EnvConfigError):
        where = "key 'config.env_config'"
    elif type(err).__name__ == "SharingOptionError":
        where = f"key 'sharing' (method {method})"
    else:
        where = "the env and its spaces"
    return ExperimentError(f"In {path}, {where}: {message}")
