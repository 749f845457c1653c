"""Review charts for a linkage run: matplotlib PNGs drawn from the released figures of
`tre_link.record.report` (model parameters, and counts already disclosure-controlled). Nothing
here reads Spark or computes a figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tre_link.record.report import SUBGROUPS  # noqa: E402

# --------------------------------------------------------------------------------------------
# Model parameters
# --------------------------------------------------------------------------------------------


def _labels(rows: list[dict]) -> list[str]:
    return [f"{r['comparison']}: {r['label']}" for r in rows]


def plot_match_weights(params: list[dict], path: str | Path, title: str = "Match weight per comparison level") -> str:
    rows = [r for r in params if r["match_weight"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    weights = [r["match_weight"] for r in rows]
    ax.barh(range(len(rows)), weights, color=["tab:green" if w >= 0 else "tab:red" for w in weights])
    ax.set_yticks(range(len(rows)), _labels(rows), fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("match weight (log2 m/u)")
    ax.set_title(title)
    return _save(fig, path)


def plot_m_u(params: list[dict], path: str | Path) -> str:
    rows = [r for r in params if r["m_probability"] is not None and r["u_probability"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.3 * len(rows) + 1.5), sharey=True)
    for ax, key, colour in ((axes[0], "m_probability", "tab:blue"), (axes[1], "u_probability", "tab:orange")):
        ax.barh(range(len(rows)), [r[key] for r in rows], color=colour)
        ax.set_xlim(0, 1)
        ax.set_title(key.replace("_", " "))
    axes[0].set_yticks(range(len(rows)), _labels(rows), fontsize=7)
    axes[0].invert_yaxis()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Match-weight histogram
# --------------------------------------------------------------------------------------------


def plot_match_weight_histogram(released_bins: list[tuple[float, int | None]], path: str | Path,
                                threshold_weight: float | None = None, title: str | None = None) -> str:
    """Bars for released counts only; suppressed bins (<10) are shown as empty."""
    fig, ax = plt.subplots(figsize=(8, 4))
    starts = [b for b, _ in released_bins]
    counts = [c or 0 for _, c in released_bins]
    width = min((b - a for a, b in zip(starts, starts[1:])), default=1.0) or 1.0
    ax.bar(starts, counts, width=width, align="edge", color="tab:blue")
    if threshold_weight is not None:
        ax.axvline(threshold_weight, color="tab:red", linestyle="--", label="threshold")
        ax.legend()
    ax.set_xlabel("match weight")
    ax.set_ylabel("pairs (released: <10 suppressed, rounded to 5)")
    ax.set_title(title or "Match-weight distribution of scored pairs")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Data quality and match rates
# --------------------------------------------------------------------------------------------


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


def plot_match_rates(rates: list[dict], path: str | Path) -> str:
    groups = [g for g in SUBGROUPS if any(r["subgroup"] == g for r in rates)]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups) + 0.5), squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        rows = [r for r in rates if r["subgroup"] == group]
        ax.bar([str(r["value"]) for r in rows], [r["match_rate"] or 0 for r in rows], color="tab:purple")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("match rate")
        ax.set_title(f"by {group} (suppressed groups shown as 0)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle("Records in clusters of size > 1 / records (released counts)")
    return _save(fig, path)


def _save(fig, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
