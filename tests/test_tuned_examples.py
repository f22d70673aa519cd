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


def test_files_match_their_generator():
    expected = generate.all_files()
    assert sorted(expected) == FILES, "run: python tuned_examples/generate.py"
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.name} was edited by hand; edit tuned_examples/generate.py"


def test_every_method_and_env_has_a_file():
    names = {p.stem for p in FILES}
    assert {f"{m}_{e}" for m in generate.METHODS for e in generate.ENVS} == names
    assert "adaps_lbf" in names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
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
