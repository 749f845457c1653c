"""The linkage report as a document: one list of sections, built from a `RunReport` (released
figures only), rendered as a self-contained HTML file (charts inlined, no script, nothing fetched)
and as a PDF (matplotlib, no other dependency).

The order is the one the NHS linkage guide asks for: matching statistics ahead of the results.
"""

from __future__ import annotations

import base64
import html
import tempfile
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from tre_link.record import charts  # noqa: E402
from tre_link.record.report import EXTREME_WEIGHT, RunReport  # noqa: E402

SECTION_IDS = ("matching-statistics", "data-quality", "link-rates", "recall", "model-weights", "changes", "threshold")


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list]


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)  # PNG paths


def _fmt(value) -> str:
    if value is None:
        return "suppressed (<10)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:,.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "-"
    return str(value)


def _trained(parameter: float | None) -> float | str:
    """A model parameter: None means never estimated (parameters are not counts, so never suppressed)."""
    return "not trained" if parameter is None else parameter


def _interval(estimate: dict) -> str:
    if estimate["value"] is None:
        return "not released (fewer than 10 labelled pairs)"
    return f"{estimate['value']:.3f} (95% CI {estimate['lower']:.3f} to {estimate['upper']:.3f})"


def sections(report: RunReport, chart_dir: Path) -> list[Section]:
    """The report's sections, in order, with their charts drawn into `chart_dir`."""
    q = report.quality
    out = []

    # 1. Matching statistics
    s = Section("matching-statistics", "1. Matching statistics")
    s.paragraphs.append("Every count here is disclosure-controlled: counts under 10 are suppressed and the rest "
                        "rounded to the nearest 5; every rate is computed from rounded counts.")
    s.tables.append(Table("Sources read", ["source", "Delta version", "records"],
                          [[n, v["version"], v["records"]] for n, v in report.sources.items()]))
    if report.published:
        s.tables.append(Table("Opt-outs applied at publication (every record of an opted-out person)",
                              ["project", "opt-out list version", "persons left out", "records left out"],
                              [[n, p["opt_outs_version"], p["persons_opted_out"], p["records_opted_out"]]
                               for n, p in report.published.items()]))
    s.tables.append(Table("Linkage", ["figure", "value"], [[k.replace("_", " "), v] for k, v in report.linkage.items()]))
    s.tables.append(Table("Persons by number of records", ["records per person", "persons"],
                          [[k.replace("_", " "), v] for k, v in sorted(q.cluster_sizes.items())]))
    if report.accuracy:
        a = report.accuracy
        s.tables.append(Table("Accuracy against the truth table (synthetic data)", ["measure", "value"],
                              [[k.replace("_", " "), a[k]] for k in ("pairwise_precision", "pairwise_recall",
                                                                    "pairwise_f1", "person_precision", "person_recall")]))
    if report.clerical:
        c = report.clerical
        s.paragraphs.append(f"Clerical review (sample {c['sample_id']}, {_fmt(c['labelled_pairs'])} pairs labelled "
                            f"match or non-match): precision {_interval(c['precision'])}; recall "
                            f"{_interval(c['recall'])}, of the pairs the blocking rules scored.")
    out.append(s)

    # 2. Data quality
    s = Section("data-quality", "2. Data quality per source")
    s.tables.append(Table("Completeness (recorded at all) and validity (usable, of those recorded)",
                          ["source", "field", "rows", "present", "completeness", "validity"],
                          [[r["source"], r["field"], r["rows"], r["present"], r["completeness"], r.get("validity")]
                           for r in q.completeness]))
    s.tables.append(Table("Within-source duplicates",
                          ["source", "rows", "duplicated record ids", "duplicate identifier groups",
                           "rows in those groups", "share of rows"],
                          [[d["source"], d["rows"], d["duplicate_record_ids"], d["duplicate_identifier_groups"],
                            d["duplicate_identifier_rows"], d["duplicate_row_share"]] for d in report.duplicates]))
    s.paragraphs.append("A duplicate identifier group is a set of rows of one source with the same NHS number, "
                        "names, date of birth and postcode.")
    s.charts.append(charts.plot_completeness(q.completeness, chart_dir / "completeness.png"))
    out.append(s)

    # 3. Link rates
    s = Section("link-rates", "3. Link rates by source and subgroup")
    s.paragraphs.append("Link rate: the share of a group's records placed in a person with at least one other record.")
    if q.overall_match_rate is not None:
        s.paragraphs.append(f"Over all records the link rate is {q.overall_match_rate:.3f}.")
    gaps = report.match_rate_gaps
    s.paragraphs += [g["sentence"] for g in gaps] or ["No subgroup has two groups with released rates."]
    if gaps:
        s.paragraphs.append(f"The largest gap is by {gaps[0]['subgroup'].replace('_', ' ')}.")
    s.tables.append(Table("Link rate by subgroup", ["subgroup", "group", "records", "linked", "link rate"],
                          [[r["subgroup"], r["value"], r["records"], r["linked"], r["match_rate"]] for r in q.match_rates]))
    s.charts.append(charts.plot_match_rates(q.match_rates, chart_dir / "match_rates.png", overall=q.overall_match_rate))
    out.append(s)

    # 4. Recall
    s = Section("recall", "4. Recall by subgroup")
    if report.truth_recall:
        s.paragraphs.append("Against the truth table: of the records whose person has another record, the share "
                            "linked to at least one of them.")
        s.paragraphs += [g["sentence"] for g in report.recall_gaps]
        s.tables.append(Table("Recall by subgroup (truth)", ["subgroup", "group", "linkable records", "found", "recall"],
                              [[r["subgroup"], r["value"], r["linkable"], r["found"], r["recall"]]
                               for r in report.truth_recall]))
        s.charts.append(charts.plot_match_rates(report.truth_recall, chart_dir / "recall_by_subgroup.png",
                                                rate="recall", n="linkable", title="Recall against the truth table"))
    if report.clerical:
        s.paragraphs.append("From clerical labels, weighted by the sampling design (pairs whose two records "
                            "differ in a subgroup are 'mixed').")
        s.tables.append(Table("Precision and recall by pair subgroup (clerical labels)",
                              ["subgroup", "group", "precision (95% CI)", "recall (95% CI)"],
                              [[g["subgroup"], g["value"], _interval(g["precision"]), _interval(g["recall"])]
                               for g in report.clerical["by_subgroup"]]))
    if not report.truth_recall and not report.clerical:
        s.paragraphs.append("No truth table and no clerical labels: recall cannot be estimated for this run. "
                            "Draw a review sample with `tre-link review sample`.")
    out.append(s)

    # 5. Weights
    s = Section("model-weights", "5. The model's weights")
    s.paragraphs.append(f"Model: {report.model.get('model_uri') or report.model.get('source')}. "
                        f"Prior match weight {_fmt(report.parameters.prior_match_weight)}.")
    flagged = [r for r in report.flagged_levels if r["flags"]]
    s.paragraphs.append(
        f"{len(flagged)} level(s) flagged: 'untrained' has no m or u estimate; 'extreme' has |weight| of "
        f"{EXTREME_WEIGHT:g} or more, so it all but decides a pair on its own." if flagged else
        "No level is untrained and none has an extreme weight.")
    s.tables.append(Table("Comparison levels", ["comparison", "level", "m", "u", "match weight", "tf adjusted", "flags"],
                          [[r["comparison"], r["label"], _trained(r["m_probability"]), _trained(r["u_probability"]),
                            _trained(r["match_weight"]), r["tf_adjustment"], ", ".join(r["flags"]) or "-"]
                           for r in report.flagged_levels]))
    s.charts.append(charts.plot_match_weights(report.parameters.levels, chart_dir / "match_weights.png",
                                              prior_match_weight=report.parameters.prior_match_weight))
    s.charts.append(charts.plot_m_u(report.parameters.levels, chart_dir / "m_u_parameters.png"))
    out.append(s)

    # 6. Changes
    s = Section("changes", "6. Changes since the approved model")
    if report.approved is None:
        s.paragraphs.append("No model version is approved yet, so there is nothing to compare with. Approve one "
                            "with `tre-link approve --version N --reason ...`.")
    else:
        ap = report.approved
        s.paragraphs.append(f"Compared with the approved model {ap['model_uri']} (run {ap['run_id']}).")
        s.tables.append(Table("Match weights", ["comparison", "level", "approved", "this run", "difference"],
                              [[r["comparison"], r["label"], _trained(r["approved"]), _trained(r["this_run"]),
                                _trained(r["difference"])] for r in ap["weights"]]))
        s.tables.append(Table("Metrics (released)", ["metric", "approved run", "this run", "difference"],
                              [[r["metric"], r["approved"], r["this_run"], r["difference"]] for r in ap["metrics"]]))
    out.append(s)

    # 7. Threshold
    s = Section("threshold", "7. The threshold and how it was chosen")
    s.paragraphs.append(f"Pairs scored at or above match probability {report.threshold_match_probability} "
                        f"(match weight {q.threshold_weight:.2f}) are linked. {report.threshold_source}")
    s.paragraphs.append("Pairs decided by the deterministic NHS-number pass are not scored and do not appear here.")
    s.tables.append(Table("Scored pairs at or above other thresholds (sums of released whole-bin counts)",
                          ["match probability", "match weight", "pairs at or above"],
                          [[r["threshold_match_probability"], r["threshold_weight"], r["pairs_at_or_above"]]
                           for r in report.sensitivity]))
    s.charts.append(charts.plot_match_weight_histogram(q.match_weight_histogram, chart_dir / "match_weight_histogram.png",
                                                       q.threshold_weight))
    out.append(s)
    return out


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1000px; margin: 2em auto;
       padding: 0 1em; color: #1d1d1d; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #005eb8; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f4f5; } caption { text-align: left; font-weight: 600; padding: .3em 0; }
img { max-width: 100%; display: block; margin: .5em 0 1.5em; }
.note { color: #555; font-size: 13px; } nav ol { columns: 2; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    return f"<table><caption>{html.escape(table.caption)}</caption><tr>{head}</tr>{body}</table>"


def _image_html(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem.replace("_", " "))}" src="data:image/png;base64,{data}">'


def render_html(report: RunReport, parts: list[Section]) -> str:
    nav = "".join(f'<li><a href="#{p.id}">{html.escape(p.title[3:])}</a></li>' for p in parts)
    body = []
    for part in parts:
        body.append(f'<section id="{part.id}"><h2>{html.escape(part.title)}</h2>')
        body += [f"<p>{html.escape(text)}</p>" for text in part.paragraphs]
        body += [_table_html(t) for t in part.tables]
        body += [_image_html(c) for c in part.charts]
        body.append("</section>")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tre-link linkage report: run {html.escape(report.run_id)}</title>
<style>{_STYLE}</style></head>
<body><h1>Linkage report</h1>
<p class="note">Run {html.escape(report.run_id)}, config {html.escape(report.config_file)}, written {when}.
Released output: counts under 10 suppressed, others rounded to 5, rates from rounded counts; no record-level value.</p>
<nav><ol>{nav}</ol></nav>
{''.join(body)}
</body></html>
"""


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------

_LINES_PER_PAGE = 62


def _text_lines(part: Section) -> list[str]:
    lines = [part.title, ""]
    for text in part.paragraphs:
        lines += textwrap.wrap(text, 110) + [""]
    for table in part.tables:
        cells = [table.headers] + [[_fmt(v) for v in row] for row in table.rows]
        widths = [min(40, max(len(str(row[i])) for row in cells)) for i in range(len(table.headers))]
        lines.append(table.caption)
        lines += ["  ".join(str(c)[:w].ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.append("")
    return lines


def write_pdf(parts: list[Section], path: Path, heading: list[str] | None = None) -> str:
    """Each section as text pages (monospace tables) followed by its charts, one per page;
    `heading` opens the first page."""
    with PdfPages(path) as pdf:
        for number, part in enumerate(parts):
            lines = (heading or []) + _text_lines(part) if number == 0 else _text_lines(part)
            for start in range(0, len(lines), _LINES_PER_PAGE):
                fig = plt.figure(figsize=(8.27, 11.69))  # A4
                fig.text(0.05, 0.97, "\n".join(lines[start:start + _LINES_PER_PAGE]), va="top", ha="left",
                         family="monospace", fontsize=6.5)
                pdf.savefig(fig)
                plt.close(fig)
            for chart in part.charts:
                image = plt.imread(chart)
                fig = plt.figure(figsize=(8.27, 11.69))
                ax = fig.add_axes((0.04, 0.04, 0.92, 0.9))
                ax.imshow(image)
                ax.axis("off")
                fig.suptitle(part.title, fontsize=10)
                pdf.savefig(fig)
                plt.close(fig)
    return str(path)


def write_report(report: RunReport, html_path: Path, pdf_path: Path) -> tuple[str, str]:
    """The report as HTML and PDF at the given paths (released output: beside summary.json)."""
    html_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        parts = sections(report, Path(tmp))
        html_path.write_text(render_html(report, parts))
        write_pdf(parts, pdf_path, [f"Linkage report: run {report.run_id}", f"config {report.config_file}",
                                    "Released output: counts under 10 suppressed, others rounded to 5; "
                                    "rates from rounded counts.", ""])
    return str(html_path), str(pdf_path)


# --------------------------------------------------------------------------------------------
# The model card: the registered version's description (markdown, released figures only)
# --------------------------------------------------------------------------------------------

REPORT_ARTIFACT = "report/linkage_report.html"


def run_links(experiment_id: str, run_id: str) -> dict[str, str]:
    """MLflow UI links (relative to the UI) to the run page and to the run's report."""
    run = f"#/experiments/{experiment_id}/runs/{run_id}"
    return {"run": run, "report": f"{run}/artifacts/{REPORT_ARTIFACT}"}


def model_card(report: RunReport, experiment_id: str, registered_model: str) -> str:
    """Markdown for the registered version's description and the run's: headline figures and
    links to the run and its report (MLflow UI links)."""
    links = run_links(experiment_id, report.run_id)
    sources = ", ".join(f"{n} (version {v['version']}, {_fmt(v['records'])} records)" for n, v in report.sources.items())
    if report.model.get("trained_in_run"):
        first = f"**tre-link linkage model**: a Fellegi-Sunter model (Splink) trained in run [{report.run_id}]({links['run']})."
    else:
        first = f"**tre-link linkage run** [{report.run_id}]({links['run']}), linked with {report.model.get('model_uri')}."
    lines = [
        first,
        "",
        f"* **Linkage report** (matching statistics, data quality, subgroup rates, weights, changes, threshold): "
        f"[{REPORT_ARTIFACT}]({links['report']})",
        f"* **Metrics and charts**: the [training run]({links['run']}) (metrics `pairwise_f1`, `match_rate.*`, "
        "`recall.*`, `clerical.*`; charts under `charts/`)",
        f"* **Trained on**: {sources}",
        f"* **Threshold**: match probability {report.threshold_match_probability} "
        f"(match weight {report.quality.threshold_weight:.2f})",
    ]
    if report.accuracy:
        a = report.accuracy
        lines.append(f"* **Against the truth table**: pairwise F1 {_fmt(a['pairwise_f1'])}, precision "
                     f"{_fmt(a['pairwise_precision'])}, recall {_fmt(a['pairwise_recall'])}")
    if report.clerical:
        lines.append(f"* **Clerical review**: precision {_interval(report.clerical['precision'])}, "
                     f"recall {_interval(report.clerical['recall'])}")
    gaps = report.match_rate_gaps
    if gaps:
        lines.append(f"* **Largest link-rate gap**: {gaps[0]['sentence']}")
    flagged = [r for r in report.flagged_levels if r["flags"]]
    lines.append(f"* **Levels flagged** (untrained or extreme weight): {len(flagged)}")
    lines += ["", "Counts are disclosure-controlled (under 10 suppressed, others rounded to 5). Approve with "
              f"`tre-link approve --config CONFIG --version N --reason \"...\"` (moves alias `approved` of "
              f"`{registered_model}`)."]
    return "\n".join(lines)
