"""The campaign's statistics read Tune's result files and come from rliable (bench/campaign/).

The campaign's Tune runs are too long for the suite (one smoke run of `run`:
test_campaign_run.py); here two methods' result.json files are written in Tune's layout with
returns whose ordering is known, and the aggregation must find it.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.campaign
from bench.campaign import protocol, report, results  # noqa: E402
from bench.campaign.protocol import SCENARIOS, Protocol  # noqa: E402


def write_trial(storage: Path, experiment: str, seed: int, returns, ari=None, finished=True, parameters=1000, ari_from_half=None,
                tests=None):
    trial = storage / experiment / f"PPO_bps_{seed:05d}"
    trial.mkdir(parents=True)
    rows = []
    for i, value in enumerate(returns):
        row = {"training_iteration": i + 1, "config": {"seed": seed}, "done": finished and i == len(returns) - 1,
               "env_runners": {"num_env_steps_sampled_lifetime": 1000 * (i + 1), "episode_return_mean": float(value)}}
        row["sharing"] = {"parameters_in_use": parameters, "parameters_allocated": parameters}
        if tests is not None:  # (greedy, sampled) tested every second iteration; RLlib repeats the last test in between
            tested = i - i % 2
            greedy, sampled = tests[tested]
            row["evaluation"] = {"test_returns": {"env_steps": 1000 * (tested + 1), "greedy_return_mean": greedy,
                                                  "sampled_return_mean": sampled, "episodes": 20}}
        if ari is not None:
            later = ari_from_half is not None and i >= len(returns) // 2  # e.g. rows after a restore
            row["identity_pretraining"] = {"done": True, "adjusted_rand_index": ari_from_half if later else ari}
        rows.append(json.dumps(row))
    (trial / "result.json").write_text("\n".join(rows) + "\n")


def test_aggregate_writes_summary_improvement_curves_and_marl_eval(tmp_path):
    rng = np.random.default_rng(0)
    storage, out = tmp_path / "runs", tmp_path / "out"
    for seed in range(5):
        ramp = np.linspace(0, 1, 20)
        write_trial(storage, "bps_v1-adaps-ppo", seed, 10 * ramp + rng.normal(0, 0.1, 20), ari=1.0,
                    ari_from_half=float("nan") if seed == 0 else None)  # the ARI counted is the fit's
        write_trial(storage, "bps_v1-fups-ppo", seed, 5 * ramp + rng.normal(0, 0.1, 20), parameters=2000 + seed)
    write_trial(storage, "bps_v1-fups-ppo", 5, [-100.0] * 3, finished=False)  # an interrupted trial: left out
    for seed in range(2):  # a method with fewer than 5 finished seeds: left out
        write_trial(storage, "bps_v1-nops-ppo", seed, np.linspace(0, 20, 20))
    rows = report.aggregate(storage, out, reps=500)

    with open(out / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == report.SUMMARY_FIELDS
    by_method = {r["method"]: r for r in table}
    assert set(by_method) == {"adaps", "fups"}
    assert by_method["adaps"]["seeds"] == by_method["fups"]["seeds"] == "5" and by_method["fups"]["env_steps"] == "20000"
    for r in rows:  # point estimates inside their intervals; final return = mean of the last 10% (2 iterations)
        assert r["iqm_low"] <= r["iqm"] <= r["iqm_high"] and r["mean_low"] <= r["mean"] <= r["mean_high"]
    assert 9.3 < float(by_method["adaps"]["iqm"]) < 10.1 and 4.5 < float(by_method["fups"]["iqm"]) < 5.1

    with open(out / "learning_speed.csv") as f:  # the return averaged over the run: half the final value for a ramp from 0
        speed = {r["method"]: r for r in csv.DictReader(f)}
    assert 4.8 < float(speed["adaps"]["auc_iqm"]) < 5.2 and 2.3 < float(speed["fups"]["auc_iqm"]) < 2.7
    assert all(float(r["auc_low"]) <= float(r["auc_iqm"]) <= float(r["auc_high"]) for r in speed.values())
    assert by_method["adaps"]["ari"] == "1.0" and by_method["fups"]["ari"] == ""

    with open(out / "probability_of_improvement.csv") as f:
        improvement, reverse = list(csv.DictReader(f))
    assert (improvement["method"], improvement["other"]) == ("adaps", "fups") and float(improvement["p_better"]) == 1.0
    assert (reverse["method"], reverse["other"]) == ("fups", "adaps") and float(reverse["p_better"]) == 0.0
    assert improvement["score"] == "training"  # protocol 1's runs have no tests
    assert not (out / "profile_bps_v1_ppo.png").exists()

    assert (out / "curves_bps_v1_ppo.png").stat().st_size > 1000
    with open(out / "model_size.csv") as f:
        sizes = {r["method"]: int(r["parameters_in_use"]) for r in csv.DictReader(f)}
    assert sizes == {"adaps": 1000, "fups": 2002}  # median over the 5 finished seeds
    assert (out / "model_size.png").stat().st_size > 1000
    marl = json.loads((out / "marl_eval.json").read_text())
    run = marl["bps"]["v1"]["adaps_ppo"]["run_0"]
    assert run["step_0"]["step_count"] == 1000 and len(run["absolute_metrics"]["return"]) == 1
    assert len(marl["bps"]["v1"]["fups_ppo"]) == 5


def test_intervals_are_reproducible():
    """rliable resamples with numpy's global RNG: the same scores must give the same interval
    whatever ran before (two aggregate runs on the same files once differed in the 3rd digit)."""
    from rliable import metrics

    scores = {"a": np.random.default_rng(0).normal(size=(5, 1)), "b": np.random.default_rng(1).normal(size=(5, 1))}
    iqm = lambda s: np.array([metrics.aggregate_iqm(s)])  # noqa: E731
    estimates = []
    for outside_seed in (1, 2):
        np.random.seed(outside_seed)
        point, interval = report.interval_estimates(scores, iqm, reps=200)
        estimates.append({m: (point[m].tolist(), interval[m].tolist()) for m in scores})
    assert estimates[0] == estimates[1]
    # A method's interval does not depend on which other methods are in the table: rliable
    # resamples them one after another from the same global RNG, so a newly finished method
    # moved the intervals of the methods after it.
    rng = np.random.default_rng(2)
    table = {m: rng.normal(size=(5, 1)) for m in ("adaps", "fups", "fups_id", "nops")}
    with_all = report.interval_estimates(table, iqm, reps=200)[1]["nops"]
    without_one = report.interval_estimates({m: table[m] for m in ("adaps", "fups", "nops")}, iqm, reps=200)[1]["nops"]
    assert with_all.tolist() == without_one.tolist()


def test_seeds_that_would_share_env_streams_are_refused():
    # 8 env copies on the local EnvRunner: a run resets its copies with seeds seed..seed+8.
    assert list(protocol.env_seed_range(1000, 0, 8)) == list(range(1000, 1008))
    protocol.check_seeds_independent([0, 1000, 2000, 3000, 4000], 0, 8)
    with pytest.raises(SystemExit, match="Seeds 0 and 1 share env seeds"):
        protocol.check_seeds_independent([0, 1, 2, 3, 4], 0, 8)


def test_iterations_without_a_finished_episode_are_skipped(tmp_path):
    """C-RWARE's 500-step episodes end in every other 2,000-step iteration: RLlib reports NaN
    for the others. They carry no return, so the curves, the statistics and the marl-eval
    export use the iterations that measured one (the curve was empty when NaN was interpolated)."""
    storage, out = tmp_path / "runs", tmp_path / "out"
    for seed in range(5):
        ramp = np.linspace(0, 2, 20)
        ramp[1::2] = np.nan
        write_trial(storage, "crware_easy-fups-a2c", seed, ramp + 0.01 * seed)
    (row,) = report.aggregate(storage, out, reps=200)
    assert 1.7 < row["iqm"] < 2.05  # last 10% of the measured iterations
    runs = results.read_runs(storage)
    assert all(not np.isnan(r["returns"]).any() and len(r["steps"]) == 10 for r in runs)
    marl = json.loads((out / "marl_eval.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in marl_eval.json"))
    assert len(marl["crware"]["easy"]["fups_a2c"]["run_0"]) >= 10


def test_archived_runs_outlive_tune_storage(tmp_path):
    """Tune's storage stays on the machine that ran the trials; the archive (runs.jsonl, in the
    output folder, committed) carries the finished runs to the next aggregate: a campaign whose
    seeds ran on different machines or sessions still gets one table."""
    out = tmp_path / "out"
    first, second = tmp_path / "first", tmp_path / "second"
    for seed in range(5):
        write_trial(first, "bps_v1-adaps-ppo", seed, np.linspace(0, 10, 20) + seed, ari=1.0)
    for seed in range(3):  # 3 of 5 seeds on the first machine: too few for the table, but archived
        write_trial(first, "bps_v1-fups-ppo", seed, np.linspace(0, 5, 20) + seed)
    (adaps,) = report.aggregate(first, out, reps=200)
    assert adaps["method"] == "adaps"
    for seed in (3, 4):  # the other two seeds, elsewhere; the first storage is gone
        write_trial(second, "bps_v1-fups-ppo", seed, np.linspace(0, 5, 20) + seed)
    write_trial(second, "bps_v1-adaps-ppo", 0, np.linspace(0, 10, 20) + 100, ari=0.5)  # a rerun replaces its archived line
    rows = {r["method"]: r for r in report.aggregate(second, out, reps=200)}
    assert rows["fups"]["seeds"] == rows["adaps"]["seeds"] == 5
    archived = results.read_archive(out / results.ARCHIVE)
    assert len(archived) == 10 and {r["seed"] for r in archived if r["method"] == "fups"} == {0, 1, 2, 3, 4}
    (rerun,) = [r for r in archived if r["method"] == "adaps" and r["seed"] == 0]
    assert rerun["ari"] == 0.5 and rerun["returns"][-1] == 110.0
    assert rows["adaps"]["ari"] == round((4 * 1.0 + 0.5) / 5, 3)
    # the archive alone (no storage at all) gives the same table
    again = {r["method"]: r for r in report.aggregate(tmp_path / "none", out, reps=200)}
    assert again == rows


def test_a2c_rollouts_set_the_update_size():
    """The papers' A2C: one update per 5-step rollout of every env copy; a cause experiment's
    --rollout-steps changes the rollout, and with it the update, alone."""
    papers = Protocol("bps_v1", "adaps", "a2c", num_env_runners=0, envs_per_runner=8).algorithm_config()
    assert (papers.rollout_fragment_length, papers.train_batch_size_per_learner) == (5, 40)
    assert papers.num_epochs == 1 and papers.minibatch_size is None and papers.lambda_ == 1.0
    longer = Protocol("bps_v1", "adaps", "a2c", num_env_runners=0, envs_per_runner=8, rollout_steps=50).algorithm_config()
    assert (longer.rollout_fragment_length, longer.train_batch_size_per_learner) == (50, 400)
    assert longer.lr == papers.lr and longer.num_envs_per_env_runner == 8
    # Such runs are named apart from the campaign's, so they never share its rows or Tune's staging folder.
    assert Protocol("bps_v1", "adaps", "a2c", 0, 8).name == "bps_v1-adaps-a2c"
    assert Protocol("bps_v1", "adaps", "a2c", 1, 8).name == "bps_v1-adaps-a2c"  # 8 copies on one remote EnvRunner
    assert Protocol("bps_v1", "adaps", "a2c", 0, 8, rollout_steps=50).name == "bps_v1-adaps-a2c+50x8"
    assert Protocol("bps_v1", "adaps", "a2c", 2, 8).name == "bps_v1-adaps-a2c+5x16"  # 2 EnvRunners: 80 env steps per update
    assert Protocol("bps_v1", "fups_id", "ppo", 2, 80).name == "bps_v1-fups_id-ppo"


def test_ppo_cause_knobs_change_what_they_say_alone():
    """Cause experiments' --num-epochs (PPO's passes over each batch) and --plain-loss (no KL penalty,
    no value-loss clipping) change that alone, and the runs are named apart from the campaign's."""
    papers = Protocol("bps_v1", "adaps", "ppo", num_env_runners=0, envs_per_runner=8).algorithm_config()
    one = Protocol("bps_v1", "adaps", "ppo", num_env_runners=0, envs_per_runner=8, num_epochs=1).algorithm_config()
    assert (papers.num_epochs, one.num_epochs) == (4, 1)
    assert (one.train_batch_size_per_learner, one.minibatch_size, one.lr) == (
        papers.train_batch_size_per_learner, papers.minibatch_size, papers.lr)
    assert Protocol("bps_v1", "adaps", "ppo", 0, 8, num_epochs=1).name == "bps_v1-adaps-ppo+1ep"
    assert Protocol("bps_v1", "adaps", "ppo", 0, 8, num_epochs=4).name == "bps_v1-adaps-ppo"
    plain = Protocol("bps_v1", "adaps", "ppo", num_env_runners=0, envs_per_runner=8, num_epochs=1, plain_loss=True).algorithm_config()
    assert (plain.use_kl_loss, plain.kl_coeff, plain.vf_clip_param) == (False, 0.0, float("inf"))
    assert (papers.use_kl_loss, papers.vf_clip_param) == (True, float("inf"))  # protocol 2: the value loss unclipped
    assert (plain.num_epochs, plain.minibatch_size, plain.clip_param) == (1, papers.minibatch_size, papers.clip_param)
    assert Protocol("bps_v1", "adaps", "ppo", 0, 8, num_epochs=1, plain_loss=True).name == "bps_v1-adaps-ppo+1ep+plain"


def test_the_lambda_ablation_sets_adaps_threshold_alone_and_is_named_apart():
    """--mask-threshold: AdaPS's lambda reaches its sharing spec, nothing else changes, and the
    runs never share the comparison's name; lambda 0.2 (the default) is the comparison itself."""
    from rllib_adaps.methods.spec import SharingSpec

    def spec(protocol):
        return SharingSpec.from_model_config(protocol.algorithm_config().rl_module_spec.model_config)

    papers = Protocol("bps_v1", "adaps", "a2c", 0, 8)
    ablation = Protocol("bps_v1", "adaps", "a2c", 0, 8, mask_threshold=0.5)
    assert spec(papers).options.mask_threshold == 0.2 and spec(ablation).options.mask_threshold == 0.5
    assert ablation.algorithm_config().lr == papers.algorithm_config().lr
    assert ablation.name == "bps_v1-adaps-a2c+lambda0.5"
    assert Protocol("bps_v1", "adaps", "a2c", 0, 8, mask_threshold=0.2).name == papers.name == "bps_v1-adaps-a2c"


def test_per_agent_final_returns_show_which_agents_a_method_serves(tmp_path):
    """bench/per_agent_returns.py: an agent's final return is the mean of its last 10% of measured
    iterations (NaN ones skipped); unfinished trials are left out, as in the aggregate."""
    from bench import per_agent_returns

    trial = tmp_path / "crware_easy-fups-a2c" / "PPO_crware_00000"
    trial.mkdir(parents=True)
    rows = [{"done": i == 19, "env_runners": {"num_env_steps_sampled_lifetime": 2000 * (i + 1), "agent_episode_returns_mean":
                                             {"agent_0": float(i), "agent_1": 0.0 if i < 19 else float("nan")}}}
            for i in range(20)]
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    finals = per_agent_returns.agent_final_returns(trial / "result.json")
    assert finals == {"agent_0": pytest.approx(18.5), "agent_1": pytest.approx(0.0)}  # last 2 of 20; last 2 of 19

    restored = [{**r, "training_iteration": i + 1} for i, r in enumerate(rows)]
    abandoned = [{**r, "done": False, "env_runners": {**r["env_runners"], "agent_episode_returns_mean": {"agent_0": -99.0, "agent_1": -99.0}}}
                 for r in restored[16:]]
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in restored[:16] + abandoned + restored[16:]) + "\n")
    assert per_agent_returns.agent_final_returns(trial / "result.json") == finals  # the re-run replaces the abandoned rows

    rows[-1]["done"] = False
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert per_agent_returns.agent_final_returns(trial / "result.json") == {}


def test_a_restored_trial_counts_the_kept_timeline_only(tmp_path):
    """A trial restored from its checkpoint appends the re-run iterations after the abandoned
    ones; the curve keeps only the re-run, from Tune's storage and from the archive alike."""
    storage, out = tmp_path / "runs", tmp_path / "out"
    trial = storage / "lbf-fups-ppo" / "PPO_lbf_00000"
    trial.mkdir(parents=True)
    timeline = list(range(1, 9)) + list(range(5, 13))  # iterations 5-8 abandoned, then re-run from the checkpoint at 4
    rows = [{"training_iteration": it, "config": {"seed": 0}, "done": i == len(timeline) - 1,
             "env_runners": {"num_env_steps_sampled_lifetime": 2000 * it + (3 if i >= 8 else 0),
                             "episode_return_mean": -1.0 if 5 <= it <= 8 and i < 8 else float(it)}}
            for i, it in enumerate(timeline)]
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run,) = results.read_runs(storage)
    assert list(run["returns"]) == [float(it) for it in range(1, 13)]  # no abandoned -1.0
    assert np.all(np.diff(run["steps"]) > 0)

    zigzag = {**run, "steps": np.array([r["env_runners"]["num_env_steps_sampled_lifetime"] for r in rows], float),
              "returns": np.array([r["env_runners"]["episode_return_mean"] for r in rows], float)}
    out.mkdir()
    results.write_archive([zigzag], out / results.ARCHIVE)  # as archived before the fix
    (archived,) = results.read_archive(out / results.ARCHIVE)
    assert list(archived["returns"]) == list(run["returns"])
    assert results.area_under_curve(archived) == pytest.approx(results.area_under_curve(run))


def test_protocol_two_tests_every_run_and_runs_the_reference_a2c():
    """Every run measures test returns at points that end at the budget; A2C is the reference
    code's unless the +rllib ablation asks for RLlib's; PPO's value loss is not clipped."""
    from rllib_adaps.rllib.learner import ReferenceA2CLearner
    from rllib_adaps.rllib.test_returns import TestReturns

    a2c = Protocol("bps_v1", "fups", "a2c", 0, 8).algorithm_config()
    tests = a2c.custom_evaluation_function
    assert isinstance(tests, TestReturns) and tests.episodes == 20 and a2c.evaluation_interval == 1
    budget = SCENARIOS["bps_v1"]["env_steps"]
    assert (tests.every_env_steps, tests.end_env_steps) == (budget // 20, budget)
    assert a2c.learner_class is ReferenceA2CLearner and a2c.grad_clip == 0.5
    ablation = Protocol("bps_v1", "fups", "a2c", 0, 8, rllib_a2c=True)
    assert ablation.name == "bps_v1-fups-a2c+rllib" and ablation.algorithm_config().grad_clip is None
    # the last test falls in the iteration that reaches the budget, whatever the env steps per
    # iteration (A2C on LBF: 2,040): the first iteration, 20 crossings of budget / 20, the last at the end
    iterations = range(2040, budget + 2040, 2040)
    due = [trained for trained in iterations if tests._due(trained)]
    assert due[0] == 2040 and due[-1] == iterations[-1] >= budget and len(due) == 21


def test_the_score_is_the_test_return_at_the_end(tmp_path):
    """Test columns come from the tests (one per tested env step, repeats dropped), not from the
    training returns: here the training returns rank the methods one way and the tests the other."""
    storage, out = tmp_path / "storage", tmp_path / "out"
    for seed in range(5):
        write_trial(storage, "bps_v1-adaps-a2c", seed, [1.0 + 0.01 * seed] * 6, tests=[(-5.0 + seed * 0.01, -6.0)] * 6)
        write_trial(storage, "bps_v1-fups-a2c", seed, [9.0 + 0.01 * seed] * 6, tests=[(-9.0 + seed * 0.01, -9.5)] * 6)
    run = results.read_runs(storage)[0]
    assert run["test_steps"].tolist() == [1000.0, 3000.0, 5000.0]
    rows = {r["method"]: r for r in report.aggregate(storage, out, reps=200)}
    assert rows["adaps"]["test_iqm"] > rows["fups"]["test_iqm"] and rows["adaps"]["iqm"] < rows["fups"]["iqm"]
    assert rows["adaps"]["test_low"] <= rows["adaps"]["test_iqm"] <= rows["adaps"]["test_high"]
    assert rows["fups"]["test_sampled_iqm"] == pytest.approx(-9.5)
    with open(out / "probability_of_improvement.csv") as f:  # on the tests too: the training returns say 0
        improvement = list(csv.DictReader(f))[0]
    assert improvement["score"] == "test" and float(improvement["p_better"]) == 1.0
    for figure in ("curves", "test_curves", "profile"):
        assert (out / f"{figure}_bps_v1_a2c.png").stat().st_size > 1000
    again = {r["method"]: r for r in report.aggregate(tmp_path / "none", out, reps=200)}  # from the archive alone
    assert again == rows


def test_the_flattening_criterion_tells_a_plateau_from_a_rising_curve():
    """21 tests per run, 5 seeds: a curve that rose and stayed has flattened; one still rising
    by the same step per test has not (its last 4 tests gain 4/20 of the whole over the 4 before)."""
    x = np.arange(21, dtype=float)
    plateau = [{"test_greedy": -100 + 90 * (1 - np.exp(-x / 2)) + seed} for seed in range(5)]
    rising = [{"test_greedy": -100 + 4.5 * x + seed} for seed in range(5)]
    assert abs(report.late_gain(plateau)) <= report.FLAT_SHARE
    assert report.late_gain(rising) == pytest.approx(4 * 4.5 / (4.5 * 18.5), rel=1e-6)
    assert report.late_gain([{"test_greedy": x[:5]}]) is None  # too few tests to tell


def test_the_flattening_criterion_aligns_tests_from_the_end():
    """A run restored from a checkpoint tests once more where it resumed: one extra early point
    changes nothing."""
    x = np.arange(21, dtype=float)
    rising = [{"test_greedy": -100 + 4.5 * x + seed} for seed in range(5)]
    restored = [dict(r) for r in rising]
    restored[0] = {"test_greedy": np.insert(rising[0]["test_greedy"], 3, -80.0)}
    assert report.late_gain(restored) == pytest.approx(report.late_gain(rising))
