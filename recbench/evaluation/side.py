"""Side information for evaluation: item categories (diversity, calibration, item groups) and user
attributes (user groups), taken from a dataset's :class:`~recbench.data.interactions.FeatureTable`.

Evaluation reads side information independently of the model: an id-only model is audited on genres
and genders all the same. :func:`load_side_info` reads what an :class:`EvalSpec`-like request needs
and says, instead of failing, what is unavailable on the dataset and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recbench.data.features import UNKNOWN, FeatureSpec, load_feature_file, source_folder
from recbench.data.interactions import FeatureTable, IdMaps
from recbench.errors import RecbenchError
from recbench.evaluation.beyond import NEEDS_CATEGORIES

if TYPE_CHECKING:
    from recbench.evaluation.evaluator import EvalSpec

log = logging.getLogger(__name__)

#: User groups computed from the interactions themselves (every dataset has them).
ACTIVITY = "activity"
#: Item groups computed from the interactions themselves.
POPULARITY = "popularity"


@dataclass(frozen=True)
class SideInfo:
    """Item categories and user attribute labels over the dense id space.

    Parameters
    ----------
    categories: ``[n_items, n_categories]``, each item's distribution over the categories of one item
        field (multi-valued fields such as genres weigh ``1/len`` per value); an all-zero row is an
        item without features. ``None`` when the dataset has no such field.
    category_names: names of the category columns (``"Comedy"``, ...).
    user_labels: attribute name -> ``str[n_users]`` label of each user (``""``: unknown).
    """

    categories: sp.csr_matrix | None = None
    category_names: tuple[str, ...] = ()
    user_labels: Mapping[str, np.ndarray] = field(default_factory=dict)


def field_columns(table: FeatureTable, name: str) -> tuple[np.ndarray, list[str]]:
    """Indices of the known-value columns of field ``name`` in ``table`` and their value labels
    (``"gender=F"`` -> ``"F"``, ``"age<25"`` -> ``"<25"``); the ``<unknown>`` column is left out."""
    j = table.fields.index(name)
    cols = [c for c in np.flatnonzero(table.column_field == j) if table.columns[c] != f"{name}={UNKNOWN}"]
    labels = [table.columns[c][len(name) :].removeprefix("=") for c in cols]
    return np.asarray(cols, dtype=np.int64), labels


def categories_of(table: FeatureTable, name: str) -> tuple[sp.csr_matrix, tuple[str, ...]]:
    """Rows of field ``name`` renormalised to sum to 1 (zero rows: no known value)."""
    cols, labels = field_columns(table, name)
    sub = sp.csr_matrix(table.matrix[:, cols], dtype=np.float64)
    total = np.asarray(sub.sum(axis=1)).ravel()
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return sp.csr_matrix(sp.diags(scale) @ sub), tuple(labels)


def labels_of(table: FeatureTable, name: str) -> np.ndarray:
    """``str[n_entities]``: the value of a single-valued field per entity, ``""`` when unknown."""
    cols, labels = field_columns(table, name)
    sub = sp.csr_matrix(table.matrix[:, cols])
    has = np.diff(sub.indptr) > 0
    first = np.where(has, sub.indices[np.minimum(sub.indptr[:-1], max(sub.nnz - 1, 0))], 0)
    names = np.asarray([*labels, ""], dtype=object)
    return np.where(has, names[first] if labels else "", "").astype(str)


def _table(
    side: str, name: str, source: object, ids: IdMaps, files: FeatureSpec | None, cache_dir: str | None
) -> FeatureTable | None:
    """One field of one side: from the run's own feature file when it has one, else the dataset's side
    files (:meth:`~recbench.data.features.FeatureSpec.for_source`)."""
    file = getattr(files, f"{side}_file", None) if files is not None else None
    if file:
        assert files is not None
        field_spec = f"{name}:multi" if side == "item" else name  # "a|b" lists; one value is a list of one
        raw = ids.items if side == "item" else ids.users
        return load_feature_file(file, raw, [field_spec], id_column=files.id_column, sep=files.sep)
    if source_folder(source) is None and not callable(getattr(source, "side_features", None)):
        raise RecbenchError(
            "the dataset has no side-information files (e.g. synthetic data); give them in a CSV file "
            f"(an 'id' column, then one column per field) with `features=default "
            f"features.{side}_file={side}s.csv`"
        )
    wanted = FeatureSpec(
        user_fields=[name] if side == "user" else [],
        item_fields=[name] if side == "item" else [],
        cache_dir=cache_dir,
    )
    user_t, item_t = wanted.for_source(source, ids)
    return user_t if side == "user" else item_t


def load_side_info(
    source: object,
    ids: IdMaps,
    *,
    item_field: str | None,
    user_fields: Sequence[str],
    cache_dir: str | None = None,
    files: FeatureSpec | None = None,
) -> tuple[SideInfo, dict[str, str]]:
    """Side information for evaluation, and the reasons for what is missing.

    Fields are read from the run's own feature files (``files.item_file`` / ``files.user_file``, as
    configured under ``features``; the item field as ``|``-separated values) where given, else from
    the dataset ``source``'s side files (MovieLens ``u.item``/``u.user``, RecBole ``.item``...).
    Returns ``(side, unable)``: ``unable`` maps ``"item_field"`` or a user field to a sentence saying
    why it could not be read (no files, such as synthetic data, or no such field).
    """
    unable: dict[str, str] = {}
    tables: dict[str, FeatureTable | None] = {}
    wanted = [("user", f) for f in user_fields if f != ACTIVITY] + (
        [("item", item_field)] if item_field else []
    )
    for side, name in wanted:
        try:
            tables[name] = _table(side, name, source, ids, files, cache_dir)
        except RecbenchError as exc:
            unable["item_field" if side == "item" else name] = f"no {side} field {name!r}: {exc}"
    categories, names = None, ()
    if item_field and tables.get(item_field) is not None:
        categories, names = categories_of(tables[item_field], item_field)  # type: ignore[arg-type]
    labels = {f: labels_of(t, f) for f, t in tables.items() if f != item_field and t is not None}
    return SideInfo(categories=categories, category_names=names, user_labels=labels), unable


def side_for_spec(
    spec: EvalSpec,
    source: object,
    ids: IdMaps,
    cache_dir: str | None = None,
    files: FeatureSpec | None = None,
) -> tuple[EvalSpec, SideInfo | None, dict[str, str]]:
    """The side information ``spec`` needs, and ``spec`` without what the dataset cannot support.

    Returns ``(spec, side, unable)``: ``unable`` maps a metric (``ild``) or a group
    (``group/gender``) to ``"unable: <reason>"``; those are removed from the returned spec, so the
    run reports every other metric instead of failing.
    """
    if not spec.audits:
        return spec, None, {}
    needs_items = (
        any(m in NEEDS_CATEGORIES for m in spec.beyond_metrics) or spec.item_field in spec.item_groups
    )
    user_fields = [g for g in spec.user_groups if g != ACTIVITY]
    if not needs_items and not user_fields:
        return spec, SideInfo(), {}
    side, why = load_side_info(
        source,
        ids,
        item_field=spec.item_field if needs_items else None,
        user_fields=user_fields,
        cache_dir=cache_dir,
        files=files,
    )
    unable: dict[str, str] = {}
    if "item_field" in why:
        dropped = [m for m in spec.beyond_metrics if m in NEEDS_CATEGORIES]
        unable |= {m: f"unable: {m} compares item categories; {why['item_field']}" for m in dropped}
        if spec.item_field in spec.item_groups:
            unable[f"group/{spec.item_field}"] = f"unable: item groups by {why['item_field']}"
        spec = replace(
            spec,
            metrics=tuple(m for m in spec.metrics if m not in dropped),
            item_groups=tuple(g for g in spec.item_groups if g != spec.item_field),
        )
    missing = [f for f in user_fields if f in why]
    if missing:
        unable |= {f"group/{f}": f"unable: user groups by {why[f]}" for f in missing}
        spec = replace(spec, user_groups=tuple(g for g in spec.user_groups if g not in missing))
    return spec, side, unable
