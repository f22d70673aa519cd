"""Every tuned example is generated from one source, loads, and builds a valid config."""

import importlib.util
from pathlib import Path

import pytest

from rllib_adaps.app.experiment import build_experiment
from rllib_adaps.methods import SharingSpec
from rllib_adaps.rllib.fast_path import FastPathEnvRunner

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("generate", ROOT / "tuned_examples" / "generate.py")
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)

FILES = sorted((ROOT / "tuned_examples").glob("*.yaml"))
FEATURE_FILES = [p for p in FILES if p.stem.rsplit("_", 1)[-1] not in generate.ENVS]
METHOD_FILES = [p for p in FILES if p not in FEATURE_FILES]


def test_files_match_their_generator():
    expected = generate.all_files()
    assert sorted(expected) == FILES, "run: python tuned_examples/generate.py"
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.name} was edited by hand; edit tuned_examples/generate.py"


def test_every_method_and_env_has_a_file():
    names = {p.stem for p in METHOD_FILES}
    assert {f"{m}_{e}" for m in generate.METHODS for e in generate.ENVS} == names
    assert "adaps_lbf" in names


@pytest.mark.parametrize("path", METHOD_FILES, ids=[p.stem for p in METHOD_FILES])
def test_tuned_example_builds(path):
    experiment = build_experiment(path)
    method, env = path.stem.rsplit("_", 1)
    config = experiment.config
    config.validate()
    assert config.env == env
    assert config.lr == pytest.approx(3e-4) and config.gamma == pytest.approx(0.99)
    assert config.entropy_coeff == pytest.approx(0.01)
    model = config.rl_module_spec.model_config  # one module for every method
    # All three envs let every agent act every step: they take the fast path (RLlib's single-agent id).
    assert set(config.policies) == {"default_policy"} and config.env_runner_cls is FastPathEnvRunner
    assert model["fcnet_hiddens"] == [64, 64] and model["sharing_method"] == method
    sharing = SharingSpec.from_model_config(model)
    n = len(model["agent_ids"])
    layout = sharing.layout(n, model["fcnet_hiddens"])
    # NoPS: a slice per agent; SePS with K chosen automatically: room for up to N clusters.
    assert layout.num_slices == {"nops": n, "seps": n}.get(method, 1)
    assert bool(layout.masked_networks) == (method in ("snp", "adaps")) and (layout.mask_rows > 1) == (method in ("snp", "adaps"))
    assert layout.agent_id_input == (method == "fups_id")
    # every option the file sets reaches the module's spec unchanged
    written = generate.experiment(method, env)[f"{method}-{env}"]["sharing"]
    assert SharingSpec.build(method, {k: v for k, v in written.items() if k != "method"}) == sharing
    assert experiment.stop


@pytest.mark.parametrize("path", FEATURE_FILES, ids=[p.stem for p in FEATURE_FILES])
def test_feature_example_builds_with_its_network(path):
    """The network examples: continuous BPS, a recurrent policy on LBF with partial sight, a
    centralised critic on BPS; each reaches the module as written (and the recurrent one runs
    on RLlib's multi-agent path, which has the state connectors)."""
    experiment = build_experiment(path)
    config = experiment.config
    config.validate()
    model = config.rl_module_spec.model_config
    feature = path.stem.rsplit("_", 1)[-1] if not path.stem.endswith("central_critic") else "central_critic"
    method, env, changes = generate.FEATURES[feature]
    assert model["sharing_method"] == method and config.env == env
    for key, value in changes.get("model_config", {}).items():
        assert model[key] == value
    for key, value in changes.get("env_config", {}).items():
        assert config.env_config[key] == value
    assert (config.env_runner_cls is FastPathEnvRunner) == (feature != "recurrent")
    if feature == "continuous":
        assert config.rl_module_spec.action_space.shape == (2,)
    if feature == "central_critic":
        assert model["central_dim"] > 0
