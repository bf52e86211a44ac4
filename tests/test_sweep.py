"""Sweeps on a real Dask LocalCluster of 2 worker processes (no mocks)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hashpivot.optimizer.pipeline import optimize
from hashpivot.optimizer.sweep import sweep
from hashpivot.scenarios.sweep_spec import load_sweep

distributed = pytest.importorskip("distributed")

CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
OPTIONS = {
    "paths": 400,
    "scenarios": 4,
    "eval_paths": 400,
    "seed": 11,
    "time_limit_s": 120,
    "mip_gap": 0.01,
    "replications": 1,
    "calibration_rounds": 1,
    "validate": False,
}
SPEC = {
    "name": "demo-small",
    "base": "demo",
    "variants": [
        {"name": "base", "overrides": {"market.btc.drift_per_year": 0.12}},
        {"name": "flat-btc", "overrides": {"market.btc.drift_per_year": 0.0}},
        {"name": "dear-capex", "overrides": {"sites[0].conversion.capex_usd_per_it_mw": 1.2e7}},
        {
            # 110 IT MW committed by period 4: the sites cannot build it in time
            "name": "impossible-lease",
            "overrides": {
                "lease_offers[0].committed": True,
                "lease_offers[0].hard_deadline": True,
                "lease_offers[0].late_penalty_usd_per_mw_period": 0.0,
                "lease_offers[0].it_mw": 110,
                "lease_offers[0].deliver_by_period": 4,
            },
        },
    ],
    "options": OPTIONS,
}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def swept(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    frame = sweep(SPEC, client, out=out)
    return frame, out


def test_one_row_per_variant_and_the_failure_is_clean(swept):
    frame, out = swept
    assert list(frame["variant"]) == ["base", "flat-btc", "dear-capex", "impossible-lease"]
    bad = frame.set_index("variant").loc["impossible-lease"]
    assert bad["status"] == "failed"
    assert "fluidstack-a" in bad["error"]
    assert (frame["status"] == "ok").sum() == 3
    for name in ("base", "flat-btc", "dear-capex"):
        assert (out / name / "summary.json").is_file()
    assert not (out / "impossible-lease").exists()


def test_rows_equal_optimize_run_directly(swept):
    frame, _ = swept
    ex = load_sweep(SPEC)
    spec = next(v for v in ex.variants if v.name == "flat-btc")
    res = optimize(
        spec.scenario,
        paths=OPTIONS["paths"],
        n_scenarios=OPTIONS["scenarios"],
        eval_paths=OPTIONS["eval_paths"],
        seed=OPTIONS["seed"],
        time_limit_s=OPTIONS["time_limit_s"],
        mip_gap=OPTIONS["mip_gap"],
        threads=1,
        replications=OPTIONS["replications"],
        calibration_rounds=OPTIONS["calibration_rounds"],
        validate=OPTIONS["validate"],
        backend="numpy",
    )
    row = frame.set_index("variant").loc["flat-btc"]
    oos = res.summary()["plan"]["out_of_sample"]
    assert row["objective_usd"] == oos["objective_usd"]
    assert row["p_breach"] == oos["p_breach"]
    assert row["p_default"] == oos["p_default"]
    assert row["converted_mw"] == float(
        sum(
            res.plan.blocks[i].sum() * s.conversion.block_mw
            for i, s in enumerate(spec.scenario.sites)
        )
    )


def test_resume_reruns_only_the_missing_variant(client, swept, tmp_path):
    frame, out = swept
    spec = dict(SPEC, variants=SPEC["variants"][:3])
    again = sweep(spec, client, out=out, resume=True)
    assert again["resumed"].all()
    pd.testing.assert_series_equal(
        again["objective_usd"], frame["objective_usd"].iloc[:3], check_names=False
    )
    # drop one variant's outputs: only that one runs again
    missing = out / "dear-capex"
    for f in missing.iterdir():
        f.unlink()
    missing.rmdir()
    t0 = time.perf_counter()
    third = sweep(spec, client, out=out, resume=True)
    assert list(third["resumed"]) == [True, True, False]
    assert third["objective_usd"].iloc[2] == frame["objective_usd"].iloc[2]
    assert time.perf_counter() - t0 < 600


def test_cli_bad_override_exits_2_before_any_work(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    spec = dict(SPEC, variants=[{"name": "x", "overrides": {"market.btc.drfit": 0.1}}])
    f.write_text(yaml.safe_dump(spec), encoding="utf-8")
    t0 = time.perf_counter()
    proc = subprocess.run(
        CLI + ["sweep", str(f), "--workers", "1", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "variant 'x'" in proc.stderr and "drfit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
    assert time.perf_counter() - t0 < 60


def test_a_user_file_in_a_variant_directory_is_refused_before_any_work(tmp_path: Path):
    from hashpivot.optimizer.outputs import OutputError
    from hashpivot.optimizer.sweep import SWEEP_MARKER, _write_marker

    out = tmp_path / "out"
    out.mkdir()
    _write_marker(out, SPEC["name"], [])  # a previous run of this sweep
    (out / "flat-btc").mkdir()
    (out / "flat-btc" / "notes.txt").write_text("mine")
    marker = (out / SWEEP_MARKER).read_bytes()
    for flags in ({"overwrite": True}, {"resume": True}):
        t0 = time.perf_counter()
        with pytest.raises(OutputError) as info:
            sweep(SPEC, None, out=out, **flags)  # no client: a refusal starts no cluster
        assert time.perf_counter() - t0 < 20
        (line,) = str(info.value).splitlines()
        assert line.startswith("variant 'flat-btc': output directory ")
        assert "is not a hashpivot output; nothing was changed" in line
    assert (out / "flat-btc" / "notes.txt").read_text() == "mine"
    assert (out / SWEEP_MARKER).read_bytes() == marker  # nothing was changed
    assert sorted(p.name for p in out.iterdir()) == sorted([SWEEP_MARKER, "flat-btc"])
