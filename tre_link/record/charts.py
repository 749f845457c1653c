"""Review charts for a linkage run: matplotlib PNGs drawn from the released figures of
`tre_link.record.report` (model parameters, and counts already disclosure-controlled). Nothing
here reads Spark or computes a figure.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tre_link.record.report import SUBGROUPS  # noqa: E402

# The last few charts drawn, as PNG bytes, by what they were drawn from. A run draws each chart
# twice (for its MLflow artifacts and for its report), and drawing was 4 s of a small run's 60 s.
_DRAWN: OrderedDict[str, bytes] = OrderedDict()
_DRAWN_KEPT = 16


def _drawn_once(plot):
    """`plot(figures, path, ...)` that copies its first drawing from the same arguments, not draws again."""
    @functools.wraps(plot)
    def draw(figures, path: str | Path, *args, **kwargs) -> str:
        key = repr((plot.__name__, figures, args, sorted(kwargs.items())))
        path = Path(path)
        if key in _DRAWN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_DRAWN[key])
            _DRAWN.move_to_end(key)
            return str(path)
        plot(figures, path, *args, **kwargs)
        _DRAWN[key] = path.read_bytes()
        while len(_DRAWN) > _DRAWN_KEPT:
            _DRAWN.popitem(last=False)
        return str(path)
    return draw


# --------------------------------------------------------------------------------------------
# Model parameters
# --------------------------------------------------------------------------------------------


def _labels(rows: list[dict]) -> list[str]:
    return [f"{r['comparison']}: {r['label']}" for r in rows]


@_drawn_once
def plot_match_weights(params: list[dict], path: str | Path, title: str = "Match weight per comparison level",
                       prior_match_weight: float | None = None) -> str:
    """One bar per level, the prior (the weight every pair starts from) first, each labelled."""
    rows = [r for r in params if r["match_weight"] is not None]
    labels, weights = _labels(rows), [r["match_weight"] for r in rows]
    if prior_match_weight is not None:
        labels, weights = ["prior (two random records match)", *labels], [prior_match_weight, *weights]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(weights) + 1.5))
    colours = ["tab:green" if w >= 0 else "tab:red" for w in weights]
    if prior_match_weight is not None:
        colours[0] = "tab:grey"
    ax.barh(range(len(weights)), weights, color=colours)
    for y, w in enumerate(weights):
        ax.annotate(f"{w:+.1f}", (w, y), xytext=(3 if w >= 0 else -3, 0), textcoords="offset points",
                    ha="left" if w >= 0 else "right", va="center", fontsize=7)
    ax.set_yticks(range(len(weights)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.margins(x=0.12)
    ax.set_xlabel("match weight (log2 m/u); the prior is log2 of the prior odds")
    ax.set_title(title)
    return _save(fig, path)


@_drawn_once
def plot_m_u(params: list[dict], path: str | Path) -> str:
    """m on a linear scale, u on a log scale: u runs from near 1 down to 1e-6 and would vanish on a linear one."""
    rows = [r for r in params if r["m_probability"] is not None and r["u_probability"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(rows) + 1.5), sharey=True)
    for ax, key, colour in ((axes[0], "m_probability", "tab:blue"), (axes[1], "u_probability", "tab:orange")):
        ax.barh(range(len(rows)), [r[key] for r in rows], color=colour)
        ax.set_title(key.replace("_", " ") + (" (log scale)" if key == "u_probability" else ""))
    axes[0].set_xlim(0, 1)
    smallest = min((r["u_probability"] for r in rows if r["u_probability"] > 0), default=1e-6)
    axes[1].set_xscale("log")
    axes[1].set_xlim(10 ** math.floor(math.log10(smallest)), 1)
    axes[0].set_yticks(range(len(rows)), _labels(rows), fontsize=7)
    axes[0].invert_yaxis()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Match-weight histogram
# --------------------------------------------------------------------------------------------


@_drawn_once
def plot_match_weight_histogram(released_bins: list[tuple[float, int | None]], path: str | Path,
                                threshold_weight: float | None = None, title: str | None = None) -> str:
    """Bars for released counts only; suppressed bins (<10) are shown as empty."""
    fig, ax = plt.subplots(figsize=(8, 4))
    starts = [b for b, _ in released_bins]
    counts = [c or 0 for _, c in released_bins]
    width = min((b - a for a, b in zip(starts, starts[1:])), default=1.0) or 1.0
    ax.bar(starts, counts, width=width, align="edge", color="tab:blue")
    if threshold_weight is not None:
        probability = 2 ** threshold_weight / (1 + 2 ** threshold_weight)
        ax.axvline(threshold_weight, color="tab:red", linestyle="--",
                   label=f"threshold: match weight {threshold_weight:.2f} (match probability {probability:.3g})")
        ax.legend()
    ax.set_xlabel("match weight")
    ax.set_ylabel("pairs (released: <10 suppressed, rounded to 5)")
    ax.set_title(title or "Match-weight distribution of scored pairs")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Data quality and match rates
# --------------------------------------------------------------------------------------------


@_drawn_once
def plot_completeness(completeness: list[dict], path: str | Path) -> str:
    sources = sorted({r["source"] for r in completeness})
    fields = sorted({r["field"] for r in completeness})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(sources), 1)
    for i, source in enumerate(sources):
        lookup = {r["field"]: r["completeness"] for r in completeness if r["source"] == source}
        ax.bar([f + i * width for f in range(len(fields))], [lookup.get(f) or 0 for f in fields],
               width=width, label=source)
    ax.set_xticks([f + width * (len(sources) - 1) / 2 for f in range(len(fields))], fields)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("completeness (from released counts)")
    ax.set_title("Identifier completeness per source")
    ax.legend()
    return _save(fig, path)


@_drawn_once
def plot_match_rates(rates: list[dict], path: str | Path, overall: float | None = None, rate: str = "match_rate",
                     n: str = "records", title: str = "Records in clusters of size > 1 / records") -> str:
    """One panel per subgroup, values in the order given (age bands by age), each bar labelled with
    its rate and n; suppressed groups drawn hatched and labelled, never as 0; `overall` as a line.
    Each panel's axis spans its own rates, so gaps of a few points can be read."""
    groups = [g for g in SUBGROUPS if any(r["subgroup"] == g for r in rates)]
    heights = [len([r for r in rates if r["subgroup"] == g]) for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 0.28 * sum(heights) + 0.9 * len(groups) + 0.8),
                             squeeze=False, gridspec_kw={"height_ratios": [h + 1.5 for h in heights]})
    for ax, group in zip(axes[:, 0], groups):
        rows = [r for r in rates if r["subgroup"] == group]
        shown = [r[rate] for r in rows if r[rate] is not None] + ([overall] if overall is not None else [])
        low, high = (min(shown), max(shown)) if shown else (0.0, 1.0)
        pad = max(0.02, (high - low) * 0.35)
        left, right = max(0.0, low - pad), min(1.0, high + pad)
        for y, r in enumerate(rows):
            if r[rate] is None:
                ax.barh(y, right - left, left=left, color="whitesmoke", edgecolor="grey", hatch="//")
                ax.text((left + right) / 2, y, "suppressed (<10)", ha="center", va="center", fontsize=7)
            else:
                ax.barh(y, r[rate] - left, left=left, color="tab:purple")
                ax.text(r[rate], y, f" {r[rate]:.3f}", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), [f"{r['value']} (n={_n(r[n])})" for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(left, right + (right - left) * 0.12)
        if overall is not None:
            ax.axvline(overall, color="black", linestyle="--", linewidth=0.9, label=f"all records {overall:.3f}")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"by {group.replace('_', ' ')}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{title} (released counts; axes do not start at 0)", fontsize=10)
    return _save(fig, path)


def _n(count: int | None) -> str:
    return "<10" if count is None else f"{count:,}"


def _save(fig, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # long level labels are never clipped
    plt.close(fig)
    return str(path)
