"""Dataset formats (kdiffe.formats): MMRec's .inter and plain CSV/TSV read into the same Dataset as
the authors' pickles, with ids mapped, splits, duplicates, cold items and one-line errors."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from kdiffe.data import DatasetError, load_dataset

#: (user, item, split) of a small dataset: 4 users, 5 items; item 4 only in test (cold)
PAIRS = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (1, 1, 0), (1, 3, 0), (1, 0, 2), (2, 2, 0), (2, 3, 0), (2, 1, 1),
         (3, 0, 0), (3, 2, 0), (3, 4, 2)]
LABELS = ("train", "valid", "test")


def write_authors(folder, pairs=PAIRS, n_users=4, n_items=5):
    folder.mkdir(parents=True)
    for k, file in enumerate(("trnMat.pkl", "valMat.pkl", "tstMat.pkl")):
        rows = [(u, i) for u, i, s in pairs if s == k]
        m = sp.coo_matrix((np.ones(len(rows), np.float32), ([u for u, _ in rows], [i for _, i in rows])),
                          shape=(n_users, n_items))
        (folder / file).write_bytes(pickle.dumps(m))


def write_mmrec(folder, pairs=PAIRS, features=None, extra=""):
    folder.mkdir(parents=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"] + [f"{u}\t{i}\t5\t0\t{s}" for u, i, s in pairs]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n" + extra)
    for modality, array in (features or {}).items():
        np.save(folder / f"{modality}_feat.npy", array)


def write_csv(folder, pairs=PAIRS, sep=",", name="interactions.csv", split=True, items=None, extra=""):
    folder.mkdir(parents=True)
    head = sep.join(["user", "item"] + (["split"] if split else []))
    rows = [sep.join([f"u{u}", f"i{i}"] + ([LABELS[s]] if split else [])) for u, i, s in pairs]
    (folder / name).write_text("\n".join([head, *rows]) + "\n" + extra)
    if items is not None:
        (folder / "items.csv").write_text("item\n" + "\n".join(items) + "\n")


def write_recbole(folder, pairs=PAIRS, presplit=True, kg=None):
    folder.mkdir(parents=True)
    head = "user_id:token\titem_id:token\trating:float"
    files = {k: f"{folder.name}{end}" for k, end in enumerate((".train.inter", ".valid.inter", ".test.inter"))}
    for k, file in (files.items() if presplit else [(None, f"{folder.name}.inter")]):
        rows = [f"u{u}\ti{i}\t1.0" for u, i, s in pairs if k is None or s == k]
        (folder / file).write_text("\n".join([head, *rows]) + "\n")
    if kg is not None:
        links, triples = kg
        (folder / f"{folder.name}.link").write_text("item_id:token\tentity_id:token\n" +
                                                    "".join(f"{i}\t{e}\n" for i, e in links))
        (folder / f"{folder.name}.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n" +
                                                  "".join(f"{h}\t{r}\t{t}\n" for h, r, t in triples))


def same_splits(a, b):
    for part in ("train", "val", "test"):
        assert (getattr(a, part) != getattr(b, part)).nnz == 0, part


def test_mmrec_and_csv_give_the_same_dataset_as_the_authors_pickles(tmp_path):
    write_authors(tmp_path / "authors")
    write_mmrec(tmp_path / "mm")
    write_csv(tmp_path / "flat", items=[f"i{i}" for i in range(5)])
    write_csv(tmp_path / "tabbed", sep="\t", name="interactions.tsv", items=[f"i{i}" for i in range(5)])
    authors = load_dataset("authors", tmp_path)
    for name in ("mm", "flat", "tabbed"):
        ds = load_dataset(name, tmp_path)
        assert ds.train.shape == (4, 5)
        same_splits(ds, authors) if name == "mm" else None
    flat = load_dataset("flat", tmp_path)
    assert flat.item_ids == tuple(f"i{i}" for i in range(5)) and flat.user_ids == ("u0", "u1", "u2", "u3")
    same_splits(flat, authors)  # users appear in order 0..3, items follow items.csv
    assert any("test: 1 interactions on 1 items never seen in training (cold items: kept)" in n for n in flat.notes)


def test_string_ids_are_mapped_by_first_appearance_without_items_csv(tmp_path):
    write_csv(tmp_path / "d", pairs=[(5, 9, 0), (5, 7, 0), (2, 9, 0), (2, 8, 1), (5, 8, 2)])
    ds = load_dataset("d", tmp_path)
    assert ds.user_ids == ("u5", "u2") and ds.item_ids == ("i9", "i7", "i8")
    assert sorted(zip(*ds.train.nonzero())) == [(0, 0), (0, 1), (1, 0)]
    assert list(zip(*ds.val.nonzero())) == [(1, 2)] and list(zip(*ds.test.nonzero())) == [(0, 2)]


def test_repeated_pairs_are_kept_once_in_their_earliest_split(tmp_path):
    write_csv(tmp_path / "d", pairs=[*PAIRS, (0, 0, 0), (0, 0, 2), (1, 3, 1)])
    ds = load_dataset("d", tmp_path)
    assert ds.train.nnz == 8 and ds.val.nnz == 2 and ds.test.nnz == 2  # as PAIRS: each repeat fell into its earliest split
    assert any("3 repeated (user, item) pairs kept once" in n for n in ds.notes)


def test_a_missing_split_is_derived_with_the_seeded_resplit_and_said(tmp_path):
    pairs = [(u, i, 0) for u in range(30) for i in range(u % 7, u % 7 + 10)]
    write_csv(tmp_path / "d", pairs=pairs, split=False)
    a, b = load_dataset("d", tmp_path, seed=3), load_dataset("d", tmp_path, seed=3)
    assert a.train.nnz + a.val.nnz + a.test.nnz == len(pairs) and a.val.nnz > 0 and a.test.nnz > 0
    same_splits(a, b)
    assert any("no split given: derived with the seeded re-split 0.8/0.1/0.1" in n for n in a.notes)


def test_mmrec_features_are_aligned_to_item_ids_and_cast(tmp_path):
    image = np.arange(5 * 3, dtype=np.float16).reshape(5, 3)
    write_mmrec(tmp_path / "mm", features={"image": image, "text": np.ones((5, 2))})
    ds = load_dataset("mm", tmp_path)
    assert ds.features["image"].dtype == np.float32 and np.array_equal(ds.features["image"], image.astype(np.float32))
    assert set(ds.features) == {"image", "text"}


def test_an_mmrec_folder_shaped_like_baby_trains_the_full_model_on_both_modalities(tmp_path):
    from kdiffe import Config, train

    rng = np.random.default_rng(0)
    n_users, n_items = 150, 300
    pairs = []
    for u in range(n_users):
        items = rng.choice(n_items, 8, replace=False)
        pairs += [(u, int(i), 0) for i in items[:6]] + [(u, int(items[6]), 1), (u, int(items[7]), 2)]
    write_mmrec(tmp_path / "baby", pairs=pairs, features={
        "image": rng.normal(size=(n_items, 4096)).astype(np.float32),
        "text": rng.normal(size=(n_items, 384)).astype(np.float32)})
    summary = train(Config(dataset="baby", data_dir=str(tmp_path), epochs=1, M=5, R=2, device="cpu"))
    assert summary["model"] == "kdiffe" and summary["variant"] == "kdiffe"
    assert summary["modalities"] == "image,text" and summary["kg_entities"] > 2  # concepts of both modalities
    assert 0 <= summary["test"]["recall@20"] <= 1


@pytest.mark.parametrize("write,needle", [
    (lambda d: write_csv(d, extra="u1,i9,later\n"), "interactions.csv: line 14: split is not train, valid or test: 'later'"),
    (lambda d: (d.mkdir(parents=True), (d / "interactions.csv").write_text("user,thing\nu,i\n")),
     "interactions.csv: line 1: no column 'item' (columns: user, thing)"),
    (lambda d: write_csv(d, items=["i0", "i1"]), "interactions.csv: line 4: item not in items.csv: 'i2'"),
    (lambda d: write_csv(d, items=["i0", "i1", "i2", "i3", "i4", "i1"]), "items.csv: line 7: item listed twice: 'i1'"),
    (lambda d: (write_csv(d), np.save(d / "image_feat.npy", np.ones((5, 2)))),
     "image_feat.npy: features need items.csv (the item of each row)"),
    (lambda d: (write_csv(d, items=[f"i{i}" for i in range(5)]), np.save(d / "image_feat.npy", np.ones((4, 2)))),
     "image_feat.npy: expected shape (5, dim) for 5 items, got (4, 2)"),
    (lambda d: write_mmrec(d, extra="1\t2\t5\t0\t7\n"), "d.inter: line 14: x_label is not 0, 1 or 2 (train, valid, test): '7'"),
    (lambda d: write_mmrec(d, extra="x\t2\t5\t0\t0\n"), "d.inter: line 14: userID is not a non-negative integer: 'x'"),
    (lambda d: write_mmrec(d, features={"image": np.ones((4, 2))}), "d.inter: line 13: itemID beyond the 4 rows of image_feat.npy: '4'"),
    (lambda d: write_mmrec(d, features={"image": np.full((5, 2), np.nan)}), "image_feat.npy: contains NaN or infinite values"),
    (lambda d: write_csv(d, pairs=[(0, 0, 1), (1, 1, 2)]), "interactions.csv: no training interactions"),
    (lambda d: write_csv(d, pairs=[(0, 0, 0), (1, 1, 2)]), "interactions.csv: the validation split holds no interactions"),
])
def test_bad_files_are_one_line_naming_the_file_and_the_line(tmp_path, write, needle):
    write(tmp_path / "d")
    with pytest.raises(DatasetError) as err:
        load_dataset("d", tmp_path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_named_format_must_be_the_folders(tmp_path):
    from kdiffe.config import ConfigError

    write_csv(tmp_path / "d")
    with pytest.raises(ConfigError, match="data_format=mmrec: .* holds the csv format"):
        load_dataset("d", tmp_path, data_format="mmrec")
    assert load_dataset("d", tmp_path, data_format="csv").train.nnz == 8


def test_every_format_is_listed_among_the_available_datasets(tmp_path):
    from kdiffe.data import available_datasets

    write_authors(tmp_path / "a")
    write_mmrec(tmp_path / "m")
    write_csv(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    assert available_datasets(tmp_path) == ["a", "c", "m"]


def test_data_info_prints_table_one_numbers_and_warns_of_cold_items(tmp_path, capsys):
    import json

    from kdiffe.cli import main

    write_csv(tmp_path / "d", pairs=[*PAIRS, (4, 1, 2)])  # user u4 only in test
    assert main(["data", "info", "--dataset", "d", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["d: 5 users, 5 items", "interactions: 8 train, 2 validation, 3 test; density 5.20e-01"]
    assert "warning: 1 users have no training interaction: the model knows nothing of them" in out
    assert "warning: 1 test interactions are on items never seen in training (cold items)" in out
    assert any(line.startswith("warning: no item features") for line in out)
    assert main(["data", "info", "--dataset", "d", "--data-dir", str(tmp_path), "--json"]) == 0
    sheet = json.loads(capsys.readouterr().out)
    assert sheet["interactions"] == {"train": 8, "validation": 2, "test": 3} and sheet["items_never_trained"] == 1
    assert sheet["cold_interactions"] == {"validation": 0, "test": 1} and sheet["users_without_training"] == 1
    assert main(["data", "info", "--dataset", "d", "--data-dir", str(tmp_path), "--set", "data_format=rdf"]) == 2
    assert "data_format" in capsys.readouterr().err


def test_a_model_trained_on_string_ids_recommends_in_those_ids(tmp_path, capsys):
    import json

    from kdiffe.cli import main

    write_csv(tmp_path / "d", items=[f"i{i}" for i in range(5)])
    out = tmp_path / "model"
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path), "--model", "lightgcn", "--epochs", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    ids = json.loads((out / "ids.json").read_text())
    assert ids == {"users": ["u0", "u1", "u2", "u3"], "items": [f"i{i}" for i in range(5)]}
    capsys.readouterr()
    assert main(["recommend", "--model", str(out), "--users", "u2,u0", "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    top = {line.split(":")[0]: [w.split("(")[0] for w in line.split(": ")[1].split()] for line in lines}
    assert list(top) == ["user u2", "user u0"]
    assert not {"i2", "i3"} & set(top["user u2"]) and not {"i0", "i1"} & set(top["user u0"])  # trained on: excluded
    assert set(top["user u2"]) == {"i0", "i1", "i4"} and set(top["user u0"]) == {"i2", "i3", "i4"}
    assert main(["recommend", "--model", str(out), "--users", "7"]) == 2
    assert "--users: '7' is not a user id of the dataset" in capsys.readouterr().err


def test_recbole_atomic_files_give_the_same_dataset_and_read_their_kg(tmp_path):
    links = [("i0", "m.a"), ("i1", "m.b"), ("i9", "m.z")]  # i9 is in no interaction: dropped
    triples = [("m.a", "genre", "g1"), ("m.a", "director", "d7"), ("m.b", "genre", "g1"), ("g1", "sub", "g2"),
               ("m.z", "genre", "g3")]
    write_recbole(tmp_path / "rb", kg=(links, triples))
    ds = load_dataset("rb", tmp_path)
    assert ds.item_ids == ("i0", "i1", "i3", "i2", "i4")  # first appearance (train, then valid, then test)
    for k, part in enumerate(("train", "val", "test")):  # the same interactions, in their own ids
        rows, cols = getattr(ds, part).nonzero()
        assert sorted((ds.user_ids[u], ds.item_ids[i]) for u, i in zip(rows, cols)) == \
            sorted((f"u{u}", f"i{i}") for u, i, s in PAIRS if s == k)
    named = {(ds.item_ids[i], r, e) for i, r, e in ds.kg_triples.tolist()}
    assert len(named) == 3 and {i for i, _, _ in named} == {"i0", "i1"}
    by_item = {}
    for item, relation, entity in ds.kg_triples.tolist():
        by_item.setdefault(ds.item_ids[item], set()).add((relation, entity))
    assert by_item["i0"] > by_item["i1"] and len(by_item["i0"]) == 2  # i0: genre g1 and director d7; i1: genre g1


def test_a_single_recbole_inter_file_is_split_by_the_seeded_resplit(tmp_path):
    pairs = [(u, i, 0) for u in range(30) for i in range(u % 7, u % 7 + 10)]
    write_recbole(tmp_path / "rb", pairs=pairs, presplit=False)
    ds = load_dataset("rb", tmp_path, seed=1)
    assert ds.train.nnz + ds.val.nnz + ds.test.nnz == len(pairs) and ds.val.nnz and ds.test.nnz
    assert any("no split given" in n for n in ds.notes)


@pytest.mark.parametrize("write,needle", [
    (lambda d: (write_recbole(d), (d / "d.test.inter").unlink()), "a pre-split RecBole dataset needs all of"),
    (lambda d: (d.mkdir(parents=True), (d / "d.inter").write_text("user_id:token\titem:token\nu\ti\n")),
     "d.inter: line 1: no field 'item_id' (fields: user_id, item)"),
    (lambda d: write_recbole(d, kg=([("i0", "m.a")], [("m.q", "genre", "g1")])),
     "d.kg: no triple's head_id is an entity of an item in d.link"),
    (lambda d: (write_recbole(d), (d / "d.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n")),
     "d.kg: a RecBole KG needs both a .kg and a .link file"),
])
def test_bad_recbole_files_are_one_line(tmp_path, write, needle):
    write(tmp_path / "d")
    with pytest.raises(DatasetError) as err:
        load_dataset("d", tmp_path)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("source,to", [("csv", "authors"), ("csv", "mmrec"), ("authors", "mmrec"), ("mmrec", "authors"),
                                       ("authors", "authors")])
def test_data_convert_round_trips(tmp_path, capsys, source, to):
    from kdiffe.cli import main

    items = [f"i{i}" for i in range(5)]
    feats = {"image": np.arange(10, dtype=np.float32).reshape(5, 2)}
    if source == "csv":
        write_csv(tmp_path / "src", items=items)
        np.save(tmp_path / "src" / "image_feat.npy", feats["image"])
    elif source == "authors":
        write_authors(tmp_path / "src")
        np.save(tmp_path / "src" / "image_feat.npy", feats["image"])
        (tmp_path / "src" / "kg.txt").write_text("0 0 7\n1 0 7\n1 1 8\n")
    else:
        write_mmrec(tmp_path / "src", features=feats)
    out = tmp_path / "converted"
    assert main(["data", "convert", "--dataset", "src", "--data-dir", str(tmp_path), "--to", to, "--out", str(out)]) == 0
    assert f"written in the {to} format to {out}" in capsys.readouterr().out
    a, b = load_dataset("src", tmp_path), load_dataset("converted", tmp_path)
    same_splits(a, b)
    assert np.array_equal(a.features["image"], b.features["image"])
    if source == "authors" and to == "authors":
        assert np.array_equal(a.kg_triples, b.kg_triples)
    assert main(["data", "convert", "--dataset", "src", "--data-dir", str(tmp_path), "--to", to, "--out", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["data", "convert", "--dataset", "src", "--data-dir", str(tmp_path), "--out", str(out)]) == 2
    assert "data convert needs --to" in capsys.readouterr().err


def test_export_from_a_checkpoint_keeps_the_datasets_own_ids(tmp_path, capsys):
    import json

    from kdiffe import serving
    from kdiffe.cli import main
    from kdiffe.config import Config
    from kdiffe.dataset import DatasetError
    from kdiffe.trainer import Trainer

    write_csv(tmp_path / "d", items=[f"i{i}" for i in range(5)])
    trainer = Trainer(Config(dataset="d", data_dir=str(tmp_path), model="lightgcn", epochs=1, device="cpu"),
                      log=lambda *_: None)
    trainer.run()
    trainer.save(tmp_path / "state")
    assert main(["export", "--checkpoint", str(tmp_path / "state"), "--out", str(tmp_path / "exported")]) == 0
    ids = json.loads((tmp_path / "exported" / "ids.json").read_text())
    assert ids == {"users": ["u0", "u1", "u2", "u3"], "items": [f"i{i}" for i in range(5)]}
    (tmp_path / "state" / "ids.json").write_text(json.dumps({"users": ["u0"], "items": []}))
    with pytest.raises(DatasetError, match=r"ids.json: expected \{\"users\": \[4 strings\], \"items\": \[5 strings\]\}"):
        serving.export_checkpoint(tmp_path / "state", tmp_path / "again")
    capsys.readouterr()
