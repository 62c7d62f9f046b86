import re

import numpy as np
import pytest

from kdiffe.config import VARIANTS, Config, ConfigError, from_dict, parse_overrides


def test_paper_defaults():
    c = Config()
    assert (c.M, c.R, c.xi, c.t, c.tau, c.theta1, c.theta2, c.q, c.dim) == (50, 12, 0.7, 10, 0.5, 1e-2, 1e-5, 1, 64)
    assert c.ks == (10, 20, 50) and c.select_on == "val" and c.l2 == "params"


@pytest.mark.parametrize("variant,use_s,use_kg,use_cl,guided", [
    ("kdiffe", True, True, True, True), ("no_s", False, True, True, True),
    ("unguided", True, True, True, False), ("no_cl", True, True, False, True),
    ("lightgcn", False, False, False, False), ("lightgcn_s", True, False, False, False),
])
def test_variant_flags(variant, use_s, use_kg, use_cl, guided):
    c = Config(variant=variant)
    assert (c.use_s, c.use_kg, c.use_cl, c.guided) == (use_s, use_kg, use_cl, guided)


def test_zero_xi_and_theta1_switch_parts_off():
    assert not Config(xi=0.0).use_s
    assert not Config(theta1=0.0).use_cl


def test_overrides_are_typed():
    values = parse_overrides(["xi=0.3", "M=80", "ks=5,10,20", "kg=file", "data_dir=none"])
    assert values == {"xi": 0.3, "M": 80, "ks": (5, 10, 20), "kg": "file", "data_dir": None}
    assert isinstance(values["M"], int)


@pytest.mark.parametrize("pairs,needle", [
    (["bogus=1"], "unknown parameter 'bogus'"),
    (["M=abc"], "M='abc'"),
    (["M=2.5"], "M='2.5'"),
    (["novalue"], "expected key=value"),
])
def test_bad_overrides(pairs, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_overrides(pairs)


@pytest.mark.parametrize("values,needle", [
    ({"M": 0}, "M=0"), ({"R": -3}, "R=-3"), ({"xi": -0.1}, "xi"), ({"tau": 0.0}, "tau"),
    ({"variant": "nope"}, "variant"), ({"restart": 1.0}, "restart"), ({"metric": "recall@7"}, "metric"),
    ({"lr": float("nan")}, "lr"), ({"q": 1.5}, "q"), ({"kg": "web"}, "kg"), ({"select_on": "train"}, "select_on"),
    ({"l2": "all"}, "l2="),
])
def test_impossible_values(values, needle):
    with pytest.raises(ConfigError, match=needle):
        from_dict(values)


def test_round_trip():
    c = Config(M=80, ks=(5, 10, 20), metric="ndcg@10")
    assert from_dict(c.to_dict()) == c
    assert c.replace(xi=0.1).xi == 0.1
    assert set(VARIANTS) == {"kdiffe", "no_s", "unguided", "no_cl", "lightgcn", "lightgcn_s"}


@pytest.mark.parametrize("values,needle", [({"resplit": -1}, "resplit=-1"),
                                           ({"resplit_ratios": "0.5,0.5"}, "resplit_ratios='0.5,0.5'"),
                                           ({"resplit_ratios": "0.8,0.3,-0.1"}, "three shares"),
                                           ({"resplit_ratios": "a,b,c"}, "three shares"),
                                           ({"resplit_holdout": "all"}, "resplit_holdout='all'")])
def test_resplit_settings_are_checked(values, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        from_dict(values)


def test_resplit_config_gives_a_resplit_dataset():
    from kdiffe.trainer import dataset_for

    ds = dataset_for(from_dict({"dataset": "synthetic", "resplit": 2, "resplit_ratios": "0.7,0.1,0.2"}))
    assert ds.name == "synthetic[resplit 2]" and abs(ds.test.nnz / (ds.train + ds.val + ds.test).nnz - 0.2) < 0.03
    one = dataset_for(from_dict({"dataset": "synthetic", "resplit": 2, "resplit_holdout": "one"}))
    assert one.name == "synthetic[resplit 2, one held out]"
    assert (np.diff(one.val.indptr) + np.diff(one.test.indptr)).max() == 1


@pytest.mark.parametrize("pair", ["M=inf", "M=1e400", "M=nan", "M=-inf", "epochs=1e400", "ks=10,inf",
                                  "xi=inf", "xi=nan", "lr=1e400", "tau=inf", "restart=-inf", "theta2=nan"])
def test_non_finite_overrides_name_the_parameter(pair):
    name, _, text = pair.partition("=")
    with pytest.raises(ConfigError, match=f"^{name}={re.escape(repr(text))}: expected "):
        parse_overrides([pair])


@pytest.mark.parametrize("values,needle", [
    ({"M": float("inf")}, "M=inf: must be an integer"), ({"M": float("nan")}, "M=nan: must be an integer"),
    ({"lr": 10**400}, "lr=1000"), ({"xi": float("inf")}, "xi=inf: must be a finite number"),
    ({"val_fraction": float("nan")}, "val_fraction=nan"),
    ({"M": 10**30}, f"M={10**30}: must be at most {2**63 - 1}"), ({"ks": (10, 2**70)}, "ks="),
])
def test_non_finite_and_oversized_numbers_are_refused(values, needle):
    with pytest.raises(ConfigError, match=f"^{re.escape(needle)}"):
        from_dict(values)


def test_integers_parse_exactly():
    assert parse_overrides(["epochs=12345678901234567", "M=1e3", "R=1_000"]) == {
        "epochs": 12345678901234567, "M": 1000, "R": 1000}


@pytest.mark.parametrize("values,needle", [
    ({"seed": -1}, "seed=-1"), ({"seed": 2**32}, "seed=4294967296"), ({"seed": 99999999999}, "seed=99999999999"),
    ({"resplit": 2**32}, "resplit=4294967296"), ({"seed": "99999999999"}, "seed=99999999999"),
])
def test_seeds_must_fit_numpys_seed_range(values, needle):
    with pytest.raises(ConfigError, match=f"^{re.escape(needle)}: a seed must be in \\[0, 4294967295\\]"):
        from_dict(values)
    top = from_dict({name: 2**32 - 1 for name in values})
    assert all(getattr(top, name) == 2**32 - 1 for name in values)


@pytest.mark.parametrize("change, message", [({"cl_negatives": "some"}, "cl_negatives='some': choose from all, batch, sampled"),
                                             ({"cl_samples": 0}, "cl_samples=0: must be a positive integer")])
def test_contrastive_negatives_are_validated(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config(**change)
