"""A dataset at a glance, as the paper's Table I describes its datasets: ``python -m kdiffe data info``.

Users, items, interactions per split and density; the feature modalities and their dimensions;
the dataset's own KG (kg.txt: its entities and relations, and whether it is degenerate, i.e.
cannot tell items apart, :func:`kdiffe.knowledge.is_degenerate`); then what would make training
or evaluation misleading, each with a warning: users without a training interaction, items never
seen in training, and validation or test interactions on such cold items. Everything is counted
on the sparse splits; nothing of size users x items is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dataset import cold_interactions


def datasheet(ds: Any) -> dict[str, Any]:
    """The numbers of :func:`datasheet_lines`, as a dict (JSON-ready)."""
    n_users, n_items = ds.train.shape
    splits = {"train": ds.train, "validation": ds.val, "test": ds.test}
    total = sum(m.nnz for m in splits.values())
    seen_items = np.asarray(ds.train.sum(axis=0)).ravel() > 0
    trained_users = np.diff(ds.train.indptr) > 0
    cold = {name: count for name, (count, _) in cold_interactions(ds).items()}
    sheet: dict[str, Any] = {
        "name": ds.name, "users": n_users, "items": n_items,
        "interactions": {name: int(m.nnz) for name, m in splits.items()}, "density": total / (n_users * n_items),
        "modalities": {name: int(f.shape[1]) for name, f in sorted(ds.features.items())},
        "users_without_training": int((~trained_users).sum()), "items_never_trained": int((~seen_items).sum()),
        "cold_interactions": cold, "kg": None}
    if ds.kg_triples is not None:
        from .knowledge import from_triples, is_degenerate

        kg = from_triples(ds.kg_triples, n_items)
        sheet["kg"] = {"triples": int(len(kg.triples)), "entities": int(kg.n_entities),
                       "relations": len(kg.relation_names), "degenerate": bool(is_degenerate(kg))}
    return sheet


def warnings_of(sheet: dict[str, Any]) -> list[str]:
    """One line per problem the numbers show."""
    out = []
    if sheet["users_without_training"]:
        out.append(f"{sheet['users_without_training']} users have no training interaction: the model knows "
                   "nothing of them")
    if sheet["items_never_trained"]:
        out.append(f"{sheet['items_never_trained']} items are never seen in training: they get no learned "
                   "embedding beyond their features")
    for split, count in sheet["cold_interactions"].items():
        if count:
            out.append(f"{count} {split} interactions are on items never seen in training (cold items)")
    if not sheet["modalities"]:
        out.append("no item features: full KDiffE needs --set kg=file (kg.txt) or --set kg=none (LightGCN + S)")
    if sheet["kg"] and sheet["kg"]["degenerate"]:
        out.append(f"kg.txt is degenerate ({sheet['kg']['entities']} entities): it cannot tell items apart; the "
                   "default kg=features builds a KG from the item features")
    return out


def datasheet_lines(ds: Any) -> list[str]:
    """The printed summary: the numbers, then ``warning: ...`` lines."""
    sheet = datasheet(ds)
    n = sheet["interactions"]
    kg = sheet["kg"]
    lines = [f"{sheet['name']}: {sheet['users']:,} users, {sheet['items']:,} items",
             f"interactions: {n['train']:,} train, {n['validation']:,} validation, {n['test']:,} test; "
             f"density {sheet['density']:.2e}",
             "modalities: " + (", ".join(f"{k} {d}-d" for k, d in sheet["modalities"].items()) or "none"),
             "kg.txt: " + ("none" if kg is None else f"{kg['triples']:,} triples, {kg['entities']:,} entities, "
                           f"{kg['relations']} relations" + (" (degenerate)" if kg["degenerate"] else "")),
             f"users without training interactions: {sheet['users_without_training']:,}; items never seen in "
             f"training: {sheet['items_never_trained']:,}; cold interactions: "
             + ", ".join(f"{c:,} {s}" for s, c in sheet["cold_interactions"].items())]
    lines += [f"note: {note}" for note in ds.notes]
    lines += [f"warning: {w}" for w in warnings_of(sheet)]
    return lines
