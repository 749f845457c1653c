"""tre-link's accuracy on a config's sources against its truth table: standardise, train, link, evaluate.

    .venv/bin/python bench/accuracy.py --config conf/febrl4.yaml [--threshold 0.9] > bench/results/febrl4.json

No MLflow and no publishing. Prints one JSON object of aggregate numbers: stage seconds, pairs scored,
links, pairwise precision/recall/F1 of the person index (every pair of records given one person id is
a predicted link) and person-level precision/recall, and the model's guard rails (comparison levels
never trained, weights raised to the floor). Never a record value. Compare with plain Splink's best F1
from bench/baseline_splink.py on the same data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--threshold", help="override linkage.threshold_match_probability (a probability or auto)")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--reuse", action="store_true",
                       help="link again with the model and standardised records an earlier run left in the linkage zone")
    reuse.add_argument("--retrain", action="store_true",
                       help="train and link again on the standardised records an earlier run left in the linkage zone "
                       "(for a changed linkage section; the sources' mappings must be unchanged)")
    args = parser.parse_args(argv)

    from tre_link import TreLink, load_config
    from tre_link.demo import ensure_demo_keys
    from tre_link.platform.spark import build_session

    cfg = load_config(args.config)
    ensure_demo_keys(cfg)  # throwaway keys where the config names key files that do not exist yet
    if args.threshold is not None:
        cfg = cfg.model_copy(update={"linkage": cfg.linkage.model_copy(
            update={"threshold_match_probability": args.threshold if args.threshold == "auto"
                    else float(args.threshold)})})
    with contextlib.redirect_stdout(sys.stderr):
        spark = build_session(cfg.spark)
        try:
            tl = TreLink(spark, cfg, config_path=args.config)
            seconds = {}
            if args.reuse:
                from tre_link.link.stage import TrainResult

                trained = TrainResult(model_json=cfg.output.model_json)
            else:
                if not args.retrain:
                    start = time.perf_counter()
                    tl.standardise()
                    seconds["standardise"] = round(time.perf_counter() - start, 3)
                start = time.perf_counter()
                trained = tl.train()
                seconds["train"] = round(time.perf_counter() - start, 3)
            start = time.perf_counter()
            linked = tl.link(trained.model_json)
            seconds["link"] = round(time.perf_counter() - start, 3)
            accuracy = tl.evaluate()
        finally:
            spark.stop()
    report = linked.report
    result = {
        "config": args.config,
        "threshold_match_probability": cfg.linkage.threshold_match_probability,
        "threshold_used": linked.threshold,
        "seconds": seconds,
        "pairs_scored": report.scored_pairs,
        "links_deterministic": report.links_deterministic,
        "links_probabilistic": report.links_probabilistic,
        "records": report.records_indexed,
        "persons": report.persons,
        "pairwise_precision": round(accuracy.pairwise_precision, 6),
        "pairwise_recall": round(accuracy.pairwise_recall, 6),
        "pairwise_f1": round(accuracy.pairwise_f1, 6),
        "person_precision": round(accuracy.person_precision, 6),
        "person_recall": round(accuracy.person_recall, 6),
        "true_pairs": accuracy.true_pairs,
        "predicted_pairs": accuracy.predicted_pairs,
        "true_positive_pairs": accuracy.true_positive_pairs,
        "untrained_levels": list(trained.untrained_levels),
        "floored_levels": list(trained.floored_levels),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
