"""Accuracy of a person index against a truth table, computed by aggregation (no pair enumeration)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.platform.disclosure import release_count, release_rate

_COUNTS = ("true_pairs", "predicted_pairs", "true_positive_pairs", "clusters", "true_persons", "pure_clusters",
           "complete_persons")


@dataclass(frozen=True)
class Accuracy:
    true_pairs: int
    predicted_pairs: int
    true_positive_pairs: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    clusters: int
    true_persons: int
    pure_clusters: int
    complete_persons: int
    person_precision: float  # share of clusters holding records of one true person only
    person_recall: float  # share of true persons whose records all sit in one cluster

    def as_dict(self) -> dict:
        return asdict(self)

    def released(self) -> dict:
        """As it may be released: counts disclosure-controlled, rates from the released counts."""
        counts = {name: release_count(getattr(self, name)) for name in _COUNTS}
        precision = release_rate(counts["true_positive_pairs"], counts["predicted_pairs"])
        recall = release_rate(counts["true_positive_pairs"], counts["true_pairs"])
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
        return {
            **counts,
            "pairwise_precision": precision,
            "pairwise_recall": recall,
            "pairwise_f1": f1,
            "person_precision": release_rate(counts["pure_clusters"], counts["clusters"]),
            "person_recall": release_rate(counts["complete_persons"], counts["true_persons"]),
        }


def _pairs(n):
    return n * (n - 1) / 2


def evaluate_person_index(person_index: DataFrame, truth: DataFrame) -> Accuracy:
    """Pairwise and cluster-level accuracy. Pairs are all record pairs placed in one cluster,
    so the figures include what transitive closure adds, not only the scored links."""
    joined = person_index.select("source", "record_id", "person_id").join(
        truth.select("source", "record_id", F.col("person_id").alias("true_person")),
        on=["source", "record_id"],
        how="inner",
    )
    cells = joined.groupBy("person_id", "true_person").count()
    stats = cells.agg(
        F.sum(_pairs(F.col("count"))).alias("tp"),
    ).first()
    by_cluster = cells.groupBy("person_id").agg(F.sum("count").alias("n"), F.count("*").alias("persons"))
    by_person = cells.groupBy("true_person").agg(F.sum("count").alias("n"), F.count("*").alias("clusters"))
    c = by_cluster.agg(F.sum(_pairs(F.col("n"))).alias("pairs"), F.count("*").alias("k"),
                       F.sum(F.when(F.col("persons") == 1, 1).otherwise(0)).alias("pure")).first()
    p = by_person.agg(F.sum(_pairs(F.col("n"))).alias("pairs"), F.count("*").alias("k"),
                      F.sum(F.when(F.col("clusters") == 1, 1).otherwise(0)).alias("complete")).first()
    tp, predicted, true = int(stats.tp or 0), int(c.pairs or 0), int(p.pairs or 0)
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Accuracy(
        true_pairs=true,
        predicted_pairs=predicted,
        true_positive_pairs=tp,
        pairwise_precision=precision,
        pairwise_recall=recall,
        pairwise_f1=f1,
        clusters=int(c.k),
        true_persons=int(p.k),
        pure_clusters=int(c.pure),
        complete_persons=int(p.complete),
        person_precision=int(c.pure) / int(c.k) if c.k else 1.0,
        person_recall=int(p.complete) / int(p.k) if p.k else 1.0,
    )
