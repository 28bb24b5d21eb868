"""Certified budgets (rnnskip/certify.py): the upper bounds are the exact binomial ones, keep
their promise exactly (worst case over the true rates) and on simulated calibration draws,
and the fixed-sequence pick keeps it too."""
from __future__ import annotations

import numpy as np
import pytest

from rnnskip.certify import (
    Certificate,
    cp_lower,
    cp_upper,
    fixed_sequence,
    ks_2samp,
    sequence_loss,
    smallest_certifiable,
    split_rows,
    up2,
    upper_bound,
)

DRAWS = 1000
DELTA = 0.1
# the simulation's own error: violations ~ Binomial(DRAWS, <= DELTA); 3 standard deviations
SLACK = 3 * np.sqrt(DELTA * (1 - DELTA) / DRAWS)


def _paired(rng, n, p10, p01):
    u = rng.random(n)
    return np.where(u < p10, 1.0, np.where(u < p10 + p01, -1.0, 0.0))


@pytest.mark.parametrize("p10,p01,n", [(0.03, 0.025, 4000), (0.06, 0.0, 800), (0.25, 0.2, 300)])
def test_paired_bound_holds_over_many_draws(p10, p01, n):
    rng = np.random.default_rng(1)
    mean = p10 - p01
    ubs = np.array([upper_bound(_paired(rng, n, p10, p01), DELTA) for _ in range(DRAWS)])
    assert np.mean(ubs < mean) <= DELTA + SLACK
    assert np.all(ubs >= -1.0) and np.all(ubs <= 1.0)
    assert np.mean(ubs) - mean < 2 * np.sqrt((p10 + p01) * np.log(2 / DELTA) / n) + 3 / n   # and it is tight


@pytest.mark.parametrize("p,n", [(0.01, 2000), (0.2, 300), (0.0, 500)])
def test_disagreement_bound_holds_over_many_draws(p, n):
    rng = np.random.default_rng(2)
    ubs = np.array([upper_bound((rng.random(n) < p).astype(float), DELTA, "disagreement") for _ in range(DRAWS)])
    assert np.mean(ubs < p) <= DELTA + SLACK


def test_clopper_pearson_bounds_are_the_beta_quantiles():
    stats = pytest.importorskip("scipy.stats")
    for k, n, d in [(0, 1, 0.1), (0, 100, 0.1), (5, 100, 0.05), (30, 10000, 0.1), (299, 300, 0.1), (7, 20, 0.3)]:
        assert cp_upper(k, n, d) == pytest.approx(stats.beta.ppf(1 - d, k + 1, n - k), abs=1e-9)
        assert cp_lower(k, n, d) == pytest.approx(stats.beta.ppf(d, k, n - k + 1) if k else 0.0, abs=1e-9)
    assert cp_upper(3, 3, 0.1) == 1.0 and cp_lower(0, 3, 0.1) == 0.0 and cp_upper(0, 0, 0.1) == 1.0


def _binom_pmf(n, m):
    from math import comb
    return np.array([comb(n, k) * m ** k * (1 - m) ** (n - k) for k in range(n + 1)])


@pytest.mark.parametrize("n", [20, 50])
def test_disagreement_bound_exact_worst_case(n):
    """The exact probability (binomial sum, not a simulation) that the bound falls below the
    true rate is <= delta at every rate on a fine grid."""
    ub = np.array([upper_bound(np.r_[np.ones(k), np.zeros(n - k)], DELTA, "disagreement") for k in range(n + 1)])
    worst = max(float(np.sum(_binom_pmf(n, m)[ub < m])) for m in np.linspace(0.001, 0.999, 400))
    assert worst <= DELTA + 1e-12
    assert worst > 0.5 * DELTA         # and not vacuous: the bound is tight at its worst rate


def test_paired_bound_exact_worst_case():
    """Exact over the trinomial (turned wrong, turned right, unchanged) for n = 24."""
    from math import comb
    n = 24
    ub = {(a, b): upper_bound(np.r_[np.ones(a), -np.ones(b), np.zeros(n - a - b)], DELTA)
          for a in range(n + 1) for b in range(n + 1 - a)}
    worst = 0.0
    for pw in np.linspace(0.0, 0.6, 25):
        for pr in np.linspace(0.0, 0.4, 17):
            if pw + pr > 1:
                continue
            viol = sum(comb(n, a) * comb(n - a, b) * pw ** a * pr ** b * (1 - pw - pr) ** (n - a - b)
                       for (a, b), u in ub.items() if u < pw - pr)
            worst = max(worst, viol)
    assert worst <= DELTA + 1e-12


def test_bounds_shrink_with_n_and_refuse_other_values():
    assert smallest_certifiable(10000, DELTA) < smallest_certifiable(1000, DELTA) < smallest_certifiable(100, DELTA)
    assert smallest_certifiable(300, DELTA, "disagreement") < smallest_certifiable(300, DELTA)
    # no data: nothing to say; values a loss cannot take are refused
    assert upper_bound(np.array([]), DELTA) == 1.0
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        upper_bound(np.array([0.5]), DELTA)
    with pytest.raises(ValueError, match="0 or 1"):
        upper_bound(np.array([-1.0]), DELTA, "disagreement")


def test_fixed_sequence_controls_the_error_of_the_pick():
    """Candidates of rising true loss; the budget sits between two of them. Over many
    calibration draws the chosen candidate's true loss exceeds the budget in <= delta of them."""
    rng = np.random.default_rng(4)
    true = [(0.0, 0.0), (0.01, 0.005), (0.02, 0.01), (0.03, 0.012), (0.05, 0.015), (0.08, 0.02)]
    means = [a - b for a, b in true]
    budget = 0.02                       # candidates 0..2 are within it, 3.. are not
    bad, chosen = 0, []
    for _ in range(DRAWS):
        u = rng.random(3000)
        losses = [np.where(u < a, 1.0, np.where(u < a + b, -1.0, 0.0)) for a, b in true]
        c = fixed_sequence(losses, budget, 1 - DELTA)
        if c.chosen is not None:
            bad += means[c.chosen] > budget
            chosen.append(c.chosen)
    assert bad / DRAWS <= DELTA + SLACK
    assert np.mean(chosen) >= 1.0         # and it does pick aggressive candidates


def test_fixed_sequence_stops_at_the_first_failure_and_reports():
    ok = np.zeros(5000)
    worse = np.r_[np.ones(400), np.zeros(4600)]          # 8% loss
    c = fixed_sequence([ok, ok, worse, ok], 0.01, 0.9)
    assert isinstance(c, Certificate) and c.chosen == 1 and c.tested == 3
    d = c.as_dict("val.npz")
    assert d["max_loss_points"] == 1.0 and d["certified"] and d["calibration_n"] == 5000 and d["data"] == "val.npz"
    assert 0 < d["upper_bound"] <= 1.0 and d["point_estimate"] == 0.0
    assert "loss <= 1 pt with 90% confidence on data like val.npz (n=5000" in c.line("val.npz")
    none = fixed_sequence([worse], 0.01, 0.9)
    assert none.chosen is None and 8 < 100 * none.failed_upper_bound < 10
    ub = 100 * none.failed_upper_bound
    assert f"the most conservative candidate's 90% upper bound is {up2(ub)} points" in none.line("v")
    assert "above the budget of 1 (n=5000)" in none.line("val.npz")
    few = fixed_sequence([np.zeros(40)], 0.01, 0.9)      # 40 unchanged sequences cannot certify 1 point
    floor = 100 * smallest_certifiable(40, 0.1)
    shown = up2(floor)            # rounded up: the budget the line names certifies when asked for
    assert float(shown) >= floor and float(shown) - floor < 0.01
    assert few.chosen is None and few.line("v") == (
        f"nothing certified: the most conservative candidate's 90% upper bound is {shown} points, above the budget "
        f"of 1 (n=40); with no sequence changed, 40 calibration sequences certify no budget below {shown} points "
        f"at 90% confidence")
    assert fixed_sequence([np.zeros(40)], float(shown) / 100, 0.9).chosen is not None
    assert up2(10.5019) == "10.51" and up2(10.5) == "10.50" and up2(5.3966) == "5.40"
    # the bounds count outcomes: the file's order cannot matter
    assert upper_bound(worse, 0.1) == upper_bound(worse[::-1], 0.1)
    with pytest.raises(ValueError, match="confidence"):
        fixed_sequence([ok], 0.01, 1.0)


def test_losses_and_splits():
    y = np.array([0, 1, 1, 0])
    dense = np.array([0, 1, 0, 1])
    pred = np.array([1, 1, 1, 1])
    assert sequence_loss("paired", dense, pred, y).tolist() == [1, 0, -1, 0]
    assert sequence_loss("disagreement", dense, pred, None).tolist() == [1, 0, 1, 0]
    a, b = split_rows(11, seed=0)
    assert len(a) == 5 and len(b) == 6 and not set(a) & set(b) and sorted(set(a) | set(b)) == list(range(11))


def test_two_sample_test_on_lengths():
    rng = np.random.default_rng(5)
    a = rng.integers(5, 20, 400)
    assert ks_2samp(a, a) == (0.0, 1.0)
    d, p = ks_2samp(a, rng.integers(5, 20, 300))
    assert p > 0.01
    d, p = ks_2samp(a, rng.integers(2, 6, 300))
    assert d > 0.5 and p < 1e-6
    # how often it cries wolf on same-distribution samples: about its level or less
    false = np.mean([ks_2samp(rng.normal(size=200), rng.normal(size=150))[1] < 0.05 for _ in range(400)])
    assert false <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


def test_resplit_benchmark_certifies_on_one_half_and_measures_on_the_other():
    """benchmarks/certify_bench.resplits on synthetic predictions with known flips: a harmless
    candidate, one that flips 0.1% of the rows to wrong, one that flips 5%; budget 0.5 points.
    Every split certifies the middle one (its bound on 3,000 rows is < 0.5 pt, the last one's is
    not); the realized loss and MAC cut are those of the evaluation half at that candidate, the
    uncertified pick is the last candidate (over budget on every split)."""
    from types import SimpleNamespace

    from benchmarks.certify_bench import resplits, summarize
    n = 6000
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    dense = y.copy()
    c1, c2 = dense.copy(), dense.copy()
    c1[rng.choice(n, 6, replace=False)] ^= 1
    c2[rng.choice(n, 300, replace=False)] ^= 1
    valid = np.full(n, 10)
    run = np.stack([np.full(n, 9), np.full(n, 6), np.full(n, 2)])
    ir = SimpleNamespace(macs_per_step=lambda: 100, head_macs=lambda: 0, per_step=False)
    cand = {"pred": np.stack([dense, c1, c2]), "run_steps": run, "path": [3.0, 2.0, 1.0], "qp_macs": 5}
    rows = resplits("paired", 0.5, dense, y, valid, cand, ir, splits=4)
    for r in rows:
        assert r["candidate"] == 1 and r["threshold"] == 2.0 and r["n_calibration"] == r["n_evaluation"] == 3000
        assert r["upper_bound"] <= 0.5
        perm = np.random.default_rng(10_000 + r["split"]).permutation(n)
        ev = perm[3000:]
        assert r["realized"] == pytest.approx(100 * np.mean((dense[ev] == y[ev]) & (c1[ev] != y[ev])))
        assert r["mac_cut"] == pytest.approx(1 - (6 * 100 + 10 * 5) / (10 * 100))
        assert r["uncertified_violation"] and r["uncertified_mac_cut"] == pytest.approx(1 - (2 * 100 + 50) / 1000)
    s = summarize(rows, 0.5, 3, 0.45)
    assert s["violations"] == 0 and s["uncertified_violations"] == 4 and s["certified_splits"] == 4
    assert s["mean_mac_cut"] == pytest.approx(0.35) and s["violations_met"] and not s["mac_cut_met"]
    # disagreement: the same rows, no labels; 1% budget certifies the middle candidate too
    rows = resplits("disagreement", 1.0, dense, None, valid, cand, ir, splits=2)
    assert [r["candidate"] for r in rows] == [1, 1]


def test_budget_text_names_the_reason_nothing_was_certified():
    """Enough rows for the budget: the first candidate's bound is the reason (the line said the rows could not
    certify the budget, which was not so); too few rows: the smallest budget they can certify."""
    from rnnskip.certify import Certificate, budget_text
    failed = Certificate("paired", 0.05, 0.9, 150, None, None, None, 1, 0.0198, failed_upper_bound=0.0545)
    assert budget_text(failed.as_dict("val.npz"), "thresholds 0") == (
        "not certified (the most conservative candidate's 90% upper bound is 5.45 points, above the budget of 5; "
        "n=150): thresholds 0")
    few = Certificate("paired", 0.01, 0.9, 150, None, None, None, 1, 0.0198, failed_upper_bound=0.03)
    assert budget_text(few.as_dict(), "thresholds 0") == (
        "not certified (the most conservative candidate's 90% upper bound is 3.00 points, above the budget of 1; "
        "n=150; with no sequence changed, 150 calibration sequences certify no budget below 1.98 points): "
        "thresholds 0")
    few = Certificate("disagreement", 0.01, 0.9, 150, None, None, None, 1, 0.0152, failed_upper_bound=0.03)
    assert budget_text(few.as_dict(), "thresholds 0") == (
        "not certified (the most conservative candidate's 90% upper bound is 3.00 percent of sequences, above the "
        "budget of 1; n=150; 150 calibration sequences certify no budget below 1.52 percent of sequences): "
        "thresholds 0")
    # a dict without its budget (a damaged file) still gives the line, without the comparison
    nob = dict(failed.as_dict(), max_loss_points=None)
    assert budget_text(nob, "x") == ("not certified (the most conservative candidate's 90% upper bound is 5.45 points; "
                                     "n=150): x")
    # a bound just above the budget is printed rounded up, never as the budget itself
    close = Certificate("paired", 0.0311, 0.9, 200, None, None, None, 1, 0.0114, failed_upper_bound=0.031101)
    assert "upper bound is 3.12 points, above the budget of 3.11; n=200" in budget_text(close.as_dict(), "x")


def test_a_paired_loss_certifies_below_the_unchanged_bound():
    """A candidate that turns sequences right certifies a loss budget below the bound of one that changes nothing
    (its lower bound on them is subtracted), so nothing says no smaller budget can be certified; a disagreement's
    bound is never below it."""
    from rnnskip.certify import fixed_sequence, smallest_certifiable
    right = np.r_[-np.ones(5), np.zeros(495)]
    floor = smallest_certifiable(500, 0.1)
    c = fixed_sequence([right], 0.003, 0.9)
    assert floor > 0.003 and c.chosen == 0 and c.upper_bound < 0.003
    assert fixed_sequence([np.abs(right)], floor - 1e-9, 0.9, "disagreement").chosen is None
    assert upper_bound(np.zeros(500), 0.1, "disagreement") == smallest_certifiable(500, 0.1, "disagreement")
    # nothing certified at budget 0: the line gives the candidate's own bound (0.10 pt), then the unchanged one
    z = fixed_sequence([np.r_[-np.ones(5), np.zeros(995)]], 0.0, 0.9)
    assert z.chosen is None and z.line("v").startswith(
        f"nothing certified: the most conservative candidate's 90% upper bound is {up2(100 * z.failed_upper_bound)} "
        f"points, above the budget of 0 (n=1000); with no sequence changed, 1000 calibration sequences certify no "
        f"budget below {up2(100 * smallest_certifiable(1000, 0.1))} points")
    assert z.failed_upper_bound < smallest_certifiable(1000, 0.1)


def test_masked_rows_are_compared_on_the_steps_they_run():
    """A Masking model's rows are padded to the window, so every row's length is the window's: the check against the
    certification rows compares the steps the mask runs (a review cut every test row to 4 real steps and saw no
    warning: it compared 29 with 29)."""
    from helpers import dataset, quantize_on
    from random_models import random_data, random_ir

    from rnnskip.certify import check_against_certificate, run_lengths
    ir = random_ir("feat-mask-gru", seed=0)
    x, _ = random_data(ir, n=60, T=20, seed=1)
    real = np.random.default_rng(2).integers(12, 21, len(x))
    x[np.arange(20)[None, :] >= real[:, None]] = 0.0      # padded with the mask value after each row's real steps
    full = np.full(len(x), 20)
    qm = quantize_on(ir, x, full)
    steps = run_lengths(qm, dataset(x, full))
    assert list(steps) == list((x != 0.0).any(-1).sum(1)) and (steps <= real).all() and (steps < 20).any()
    ref = sorted(int(v) for v in run_lengths(qm, dataset(x[:30], full[:30])))
    meta = {"certified": {"certified": True, "data": "val.npz"}, "calibration_lengths": ref}
    short = x[30:].copy()
    short[:, 4:] = 0.0                                     # 4 real steps each, still 20 long
    warned = []
    assert check_against_certificate(meta, dataset(x[30:], full[30:]), "--delta d.json", warned.append, qm)[
        "like_calibration"] and warned == []
    check = check_against_certificate(meta, dataset(short, full[30:]), "--delta d.json", warned.append, qm)
    assert not check["like_calibration"] and check["median_here"] <= 4 and len(warned) == 1
    assert warned[0].startswith("warning: --data is unlike the rows --delta d.json was certified on")


def test_delta_candidates_lead_in_to_an_aggressive_first_pareto_point():
    """delta-tune's fixed sequence starts with every threshold raised together, one grid value at a time, up to the
    selection's first Pareto point (a user's x=8/h=24, which scored better than the dense model on 150 selection rows,
    dominated every milder point, was tested first and stopped the walk; x=3/h=3 certified when the grid was cut)."""
    from rnnskip.delta.tune import Point, lead_in

    def pt(x, h, m=None):
        return Point(theta_x=tuple(x), theta_h=tuple(h), accuracy=0.9, macs=1.0, weight_bytes=1.0, density_input=1.0,
                     density_hidden=1.0, theta_m=(None,) * len(x) if m is None else m)

    grid = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    chain = lead_in(pt((8,), (24,)), grid, [pt((2,), (2,))])
    assert [(p.theta_x, p.theta_h) for p in chain] == [((1,), (1,)), ((2,), (2,)), ((3,), (3,)), ((4,), (4,)),
                                                       ((6,), (6,)), ((8,), (8,)), ((8,), (12,)), ((8,), (16,))]
    assert chain[1].accuracy == 0.9 and np.isnan(chain[0].accuracy)   # the sweep's own point where it has one
    # two layers, a per-step Dense's hidden threshold (0) stays 0; the smallest point needs no lead-in
    assert [(p.theta_x, p.theta_h) for p in lead_in(pt((4, 2), (3, 0)), grid, [])] == \
        [((1, 1), (1, 0)), ((2, 2), (2, 0)), ((3, 2), (3, 0))]
    assert lead_in(pt((1,), (1,)), grid, []) == [] and lead_in(pt((2,), (2,)), (0, 2, 8), []) == []
