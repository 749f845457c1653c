"""Clerical review: the sampling design, label checks, and precision and recall estimated from
labels against a known truth (a simulated population, and pairs of the synthetic generator)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from tre_link import TreLink
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import write_table
from tre_link.platform.errors import EXIT_BAD_INPUT, InputDataError
from tre_link.record import review


def _write_csv(path: Path, rows: list[dict], columns=("pair_id", "label", "reviewer")) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------ label files


def test_label_csv_refuses_bad_labels_and_repeated_pairs_naming_line_and_pair(tmp_path):
    path = _write_csv(tmp_path / "labels.csv", [
        {"pair_id": "a1", "label": "match", "reviewer": "r"},
        {"pair_id": "b2", "label": "mtach", "reviewer": "r"},
        {"pair_id": "a1", "label": "non_match", "reviewer": "r"},
        {"pair_id": "c3", "label": "", "reviewer": ""},  # not labelled yet: skipped, not refused
    ])
    with pytest.raises(InputDataError) as err:
        review.read_label_csv(path)
    message = str(err.value)
    assert "line 3 (pair_id b2): label 'mtach' is not one of match, non_match, unsure" in message
    assert "line 4: pair_id a1 is labelled again (first on line 2)" in message
    assert "c3" not in message
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_label_csv_refuses_a_file_without_a_label_column(tmp_path):
    path = _write_csv(tmp_path / "labels.csv", [{"pair_id": "a1", "verdict": "match"}], ("pair_id", "verdict"))
    with pytest.raises(InputDataError, match="missing column\\(s\\) label"):
        review.read_label_csv(path)


def test_label_csv_reads_labels_case_blind_and_skips_blank_ones(tmp_path):
    path = _write_csv(tmp_path / "labels.csv", [{"pair_id": "a1", "label": " Match ", "reviewer": "ann"},
                                                {"pair_id": "b2", "label": "", "reviewer": ""}])
    assert review.read_label_csv(path) == [{"pair_id": "a1", "label": "match", "reviewer": "ann"}]


def _config(root: Path) -> JobConfig:
    return JobConfig.model_validate({
        "sources": [{"name": "gp", "path": str(root / "gp"), "columns": {
            "record_id": "id", "nhs_number": "n", "given_name": "g", "family_name": "f", "dob": "d", "sex": "s", "postcode": "p"}}],
        "linkage": {"blocking_rules_training": ["l.dob = r.dob", "l.sex = r.sex"],
                    "blocking_rules_predict": ["l.dob = r.dob"]},
        "output": {"root": str(root), "linkage_zone": str(root / "linkage"), "research_zone": str(root / "research")},
    })


def test_ingest_refuses_pair_ids_not_in_the_sample_by_id_and_merges_relabels(spark, tmp_path):
    cfg = _config(tmp_path)
    sample = spark.createDataFrame(
        [("p1", "v0-seed7", "gp:1", "gp:2", 3.0, 0.9, 3, "gp-gp", "3/gp-gp", 20, 2),
         ("p2", "v0-seed7", "gp:3", "gp:4", -2.0, 0.2, 2, "gp-gp", "2/gp-gp", 40, 2)],
        "pair_id string, sample_id string, unique_id_l string, unique_id_r string, match_weight double, "
        "match_probability double, band int, source_pair string, stratum string, stratum_pairs long, "
        "stratum_sampled int")
    write_table(sample, cfg.output.review_sample_table)
    tl = TreLink(spark, cfg)
    bad = _write_csv(tmp_path / "bad.csv", [{"pair_id": "p1", "label": "match", "reviewer": "a"},
                                            {"pair_id": "zz9", "label": "match", "reviewer": "a"}])
    with pytest.raises(InputDataError, match="not in the review sample: zz9"):
        tl.review_ingest(bad)
    assert not Path(cfg.output.clerical_labels_table).exists()  # nothing written from a refused file

    tl.review_ingest(_write_csv(tmp_path / "one.csv", [{"pair_id": "p1", "label": "match", "reviewer": "a"},
                                                      {"pair_id": "p2", "label": "match", "reviewer": "a"}]))
    tl.review_ingest(_write_csv(tmp_path / "two.csv", [{"pair_id": "p2", "label": "non_match", "reviewer": "b"}]))
    labels = spark.read.format("delta").load(cfg.output.clerical_labels_table)
    got = {r["pair_id"]: (r["label"], r["reviewer"], r["stratum_pairs"]) for r in labels.collect()}
    assert got == {"p1": ("match", "a", 20), "p2": ("non_match", "b", 40)}


# ------------------------------------------------------------------------------------ the design


def test_stratified_pairs_put_each_pair_in_its_band_and_source_pair(spark):
    # threshold 0.5 is weight 0; borderline_weight 4 gives edges -8, -4, -2, 0, 2, 4, 8
    scored = spark.createDataFrame(
        [("hospital:7", "gp:1", -9.0, 0.001), ("gp:1", "gp:2", -1.0, 0.3), ("council:5", "gp:2", 0.0, 0.5),
         ("gp:3", "hospital:9", 8.5, 0.99)],
        "unique_id_l string, unique_id_r string, match_weight double, match_probability double")
    got = review.stratified_pairs(scored, 0.5, 4.0).select("unique_id_l", "unique_id_r", "band", "source_pair",
                                                            "stratum")
    expected = spark.createDataFrame(
        [("gp:1", "hospital:7", 0, "gp-hospital", "0/gp-hospital"), ("gp:1", "gp:2", 3, "gp-gp", "3/gp-gp"),
         ("council:5", "gp:2", 4, "council-gp", "4/council-gp"), ("gp:3", "hospital:9", 7, "gp-hospital", "7/gp-hospital")],
        "unique_id_l string, unique_id_r string, band int, source_pair string, stratum string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # the pair id does not depend on which record Splink put on the left
    swapped = scored.select(F.col("unique_id_r").alias("unique_id_l"), F.col("unique_id_l").alias("unique_id_r"),
                            "match_weight", "match_probability")
    ids = {r[0] for r in review.stratified_pairs(scored, 0.5, 4.0).select("pair_id").collect()}
    assert ids == {r[0] for r in review.stratified_pairs(swapped, 0.5, 4.0).select("pair_id").collect()}


def test_allocation_gives_the_borderline_share_and_never_more_than_a_stratum_holds():
    edges = review.band_edges(5.0)
    strata = {(3, "gp-hospital"): 400, (4, "gp-hospital"): 200, (0, "gp-hospital"): 5000, (7, "gp-gp"): 3}
    got = review.allocate(strata, 100, 0.7, edges)
    assert got[(3, "gp-hospital")] + got[(4, "gp-hospital")] == pytest.approx(70, abs=1)
    assert got[(3, "gp-hospital")] == pytest.approx(2 * got[(4, "gp-hospital")], abs=1)  # in proportion to size
    assert got[(7, "gp-gp")] == 2 and got[(0, "gp-hospital")] == 30  # at least two from every stratum
    # a borderline group smaller than its share hands the rest to the other strata
    small = review.allocate({(3, "a-b"): 10, (0, "a-b"): 1000}, 100, 0.7, edges)
    assert small == {(3, "a-b"): 10, (0, "a-b"): 90}


# ------------------------------------------------------------------------------------ estimates


def _population(rng: random.Random) -> list[dict]:
    """Pairs in strata by weight band, with matches likelier at higher bands, and a prediction
    that errs both ways near the threshold."""
    pairs = []
    for band, size, p_match in ((0, 3000, 0.002), (2, 300, 0.1), (3, 200, 0.4), (4, 200, 0.7), (5, 200, 0.93),
                                (7, 1500, 0.999)):
        for _ in range(size):
            match = rng.random() < p_match
            predicted = band >= 4 or (band == 3 and rng.random() < 0.2)
            pairs.append({"stratum": str(band), "band": band, "label": "match" if match else "non_match",
                          "predicted": predicted, "source_pair": rng.choice(["gp-hospital", "gp-gp"])})
    return pairs


def _truth(pairs: list[dict]) -> tuple[float, float]:
    tp = sum(p["predicted"] and p["label"] == "match" for p in pairs)
    return (tp / sum(p["predicted"] for p in pairs),
            tp / sum(p["label"] == "match" for p in pairs))


def _draw(pairs: list[dict], rng: random.Random, allocation: dict[str, int]) -> list[dict]:
    by_stratum: dict[str, list[dict]] = {}
    for p in pairs:
        by_stratum.setdefault(p["stratum"], []).append(p)
    return [{**p, "stratum_pairs": len(members)}
            for stratum, members in by_stratum.items() for p in rng.sample(members, allocation[stratum])]


def test_weighted_estimates_are_unbiased_and_their_intervals_cover_a_known_truth():
    population = _population(random.Random(1))
    true_precision, true_recall = _truth(population)
    allocation = {"0": 40, "2": 40, "3": 60, "4": 60, "5": 40, "7": 20}
    rng = random.Random(2)
    covered = {"precision": 0, "recall": 0}
    means = {"precision": 0.0, "recall": 0.0}
    draws = 300
    for _ in range(draws):
        result = review.estimate(_draw(population, rng, allocation))
        for name, truth in (("precision", true_precision), ("recall", true_recall)):
            est = getattr(result, name)
            covered[name] += est.lower <= truth <= est.upper
            means[name] += est.value / draws
    # 95% intervals: coverage near 95% over repeated samples, and the estimator centred on the truth
    assert covered["precision"] / draws >= 0.9 and covered["recall"] / draws >= 0.9, covered
    assert means["precision"] == pytest.approx(true_precision, abs=0.01)
    assert means["recall"] == pytest.approx(true_recall, abs=0.02)


def test_released_estimates_hold_back_what_rests_on_fewer_than_ten_labels():
    rows = [{"stratum": "3", "stratum_pairs": 50, "label": "match", "predicted": True, "source_pair": "a-b"}] * 12
    rows += [{"stratum": "3", "stratum_pairs": 50, "label": "match", "predicted": False, "source_pair": "a-a"}] * 3
    released = review.estimate(rows).released()
    assert released["labelled_pairs"] == 15
    assert released["precision"]["value"] == 1.0 and released["precision"]["labelled_pairs"] == 10
    assert released["recall"]["value"] == pytest.approx(40 / 50)  # from the rounded weighted counts
    assert released["recall"]["lower"] <= released["recall"]["value"] <= released["recall"]["upper"]
    by = {(g["subgroup"], g["value"]): g for g in released["by_subgroup"]}
    assert by[("source_pair", "a-a")]["recall"] == {"value": None, "lower": None, "upper": None,
                                                   "labelled_pairs": None}


# ------------------------------------------------------------------------------------ on the generator


def _oracle_labels(spark, cfg, pairs):
    """A perfect reviewer: each pair labelled from the synthetic truth table."""
    truth = spark.read.format("delta").load(cfg.truth_path)

    def person(side):
        return truth.select(F.concat_ws(":", "source", "record_id").alias(f"unique_id_{side}"),
                            F.col("person_id").alias(f"true_{side}"))

    same = F.col("true_l") == F.col("true_r")
    return pairs.join(person("l"), f"unique_id_l").join(person("r"), f"unique_id_r").withColumn(
        "label", F.when(same, "match").otherwise("non_match"))


def test_review_round_trip_on_the_demo_estimates_within_the_truth(spark, demo_run, tmp_path):
    cfg = demo_run.cfg
    tl = TreLink(spark, cfg.model_copy(update={"review": cfg.review.model_copy(update={"pairs": 60})}))
    sample = tl.review_sample()
    assert sample.pairs >= 10 and Path(sample.page).is_file() and Path(sample.csv).is_file()
    for path in (sample.page, sample.csv, sample.table.path):  # record-level files stay in the linkage zone
        assert Path(path).resolve().is_relative_to(Path(cfg.output.linkage_zone).resolve())
    _label_first_pair_on_the_page(sample.page, tmp_path)
    labelled = _oracle_labels(spark, cfg, sample.table.df).select("pair_id", "label").collect()
    csv_path = _write_csv(tmp_path / "labels.csv", [{"pair_id": r["pair_id"], "label": r["label"], "reviewer": "t"}
                                                    for r in labelled])
    loaded = tl.review_ingest(csv_path)
    assert loaded["labelled_pairs"] == sample.released()["pairs"]
    estimates = tl.evaluate_labels()
    # the truth over the whole scored population, for the demo's person index
    index = spark.read.format("delta").load(cfg.output.person_index_table).select(
        F.concat_ws(":", "source", "record_id").alias("uid"), "person_id")
    scored = spark.read.format("delta").load(cfg.output.scored_pairs_table)
    for side in ("l", "r"):
        scored = scored.join(index.withColumnRenamed("uid", f"unique_id_{side}")
                             .withColumnRenamed("person_id", f"person_{side}"), f"unique_id_{side}")
    judged = _oracle_labels(spark, cfg, scored).select(
        (F.col("person_l") == F.col("person_r")).alias("predicted"), (F.col("label") == "match").alias("match"))
    cells = {(r["predicted"], r["match"]): r["count"] for r in judged.groupBy("predicted", "match").count().collect()}
    tp = cells.get((True, True), 0)
    true_precision = tp / (tp + cells.get((True, False), 0))
    true_recall = tp / (tp + cells.get((False, True), 0))
    assert estimates.precision.lower <= true_precision <= estimates.precision.upper
    assert estimates.recall.lower <= true_recall <= estimates.recall.upper


def _label_first_pair_on_the_page(page: str, tmp_path: Path) -> None:
    """The offline page in Chromium: no console error; a click labels a pair, and the save button
    writes a CSV that `review ingest` reads."""
    from browser import Chromium

    with Chromium() as browser:
        assert browser.open(Path(page).resolve().as_uri())
        assert browser.console_errors() == []
        first = browser.evaluate("document.querySelector('input[type=radio][value=non_match]').name.slice(5)")
        browser.evaluate("document.getElementById('reviewer').value = 'tester';"
                         "document.querySelector('input[type=radio][value=non_match]').click();"
                         "window.__saved = []; URL.createObjectURL = blob => { window.__saved.push(blob); return '#'; };"
                         "document.getElementById('save').click();")
        assert "1 of" in browser.evaluate("document.getElementById('progress').textContent")
        saved = browser.evaluate("window.__saved[0].text()")
        assert browser.console_errors() == []
    rows = review.read_label_csv(_write_text(tmp_path / "page.csv", saved))
    assert rows == [{"pair_id": first, "label": "non_match", "reviewer": "tester"}]


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_estimates_on_loosely_blocked_generator_pairs_contain_the_truth(spark, demo_run):
    """A population with borderline pairs and non-matches: the demo's records paired on birth year
    alone and scored with the demo's model; the decision is the threshold."""
    from tre_link.ingest.stage import read_standardised
    from tre_link.link import probabilistic
    from tre_link.link.engine import prepare_records

    cfg = demo_run.cfg
    model = probabilistic.load_model(demo_run.summary["model_json"])
    rule = "l.dob_year = r.dob_year"
    with probabilistic.register_records(prepare_records(read_standardised(spark, cfg)), model, [rule]) as records:
        scored = probabilistic.score(records, model, [rule]).localCheckpoint(eager=True)
    threshold = cfg.linkage.threshold_match_probability
    stratified = review.stratified_pairs(scored, threshold, cfg.review.borderline_weight)
    judged = _oracle_labels(spark, cfg, stratified).withColumn("predicted", F.col("match_probability") >= threshold)
    cells = {(r["predicted"], r["label"]): r["count"] for r in judged.groupBy("predicted", "label").count().collect()}
    assert cells.get((False, "non_match"), 0) > 1000 and cells.get((True, "match"), 0) > 100  # a real population
    tp = cells[(True, "match")]
    true_precision = tp / (tp + cells.get((True, "non_match"), 0))
    true_recall = tp / (tp + cells.get((False, "match"), 0))
    sizes = {(r["band"], r["source_pair"]): r["count"] for r in stratified.groupBy("band", "source_pair").count().collect()}
    allocation = review.allocate(sizes, 400, 0.7, review.band_edges(cfg.review.borderline_weight))
    drawn = review.draw_sample(judged, allocation, seed=11).collect()
    result = review.estimate([r.asDict() for r in drawn])
    assert result.precision.lower <= true_precision <= result.precision.upper
    assert result.recall.lower <= true_recall <= result.recall.upper
    assert result.recall.upper - result.recall.lower < 0.3  # informative, not 0 to 1
