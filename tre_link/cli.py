"""`tre-link`: one subcommand per stage. Each parses args, loads config, builds the session,
calls one library function and exits with a status: 0 ok; 1 a check failed; 2 usage or config;
3 bad input data; 4 environment; 5 an unexpected error (see tre_link/platform/errors.py)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from tre_link.platform.config import JobConfig, SparkSettings, load_config
from tre_link.platform.errors import TreLinkError

log = logging.getLogger("tre_link")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s tre-link %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "splink", "mlflow", "alembic", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _session(cfg: JobConfig | None, master: str | None = None):
    from tre_link.platform.spark import build_session

    settings = cfg.spark if cfg else SparkSettings()
    if master:
        settings = settings.model_copy(update={"master": master})
    return build_session(settings)


def _cmd_synth(args, cfg: JobConfig) -> int:
    from tre_link.platform.errors import ConfigError
    from tre_link.synth import generate

    if cfg.synth is None:
        raise ConfigError(f"{args.config}: no `synth` section, so there is nothing to generate")
    spark = _session(cfg, args.master)
    result = generate(spark, cfg.synth)
    print(json.dumps({"sources": result.source_paths, "opt_outs": result.opt_outs_path, "truth": result.truth_path}))
    return 0


def _cmd_pseudonymise(args, cfg: JobConfig | None) -> int:
    from tre_link.platform.config import KeySource
    from tre_link.publish.pseudonymise import pseudonymise_table
    from tre_link.platform.secrets import load_key

    key = load_key(KeySource(env=args.key_env, file=args.key_file), purpose="linkage")
    spark = _session(cfg, args.master)
    pseudonymise_table(spark, args.input, args.output, args.column, key, extra_columns=args.extra)
    log.info("pseudonymise: wrote %s", args.output)
    return 0


def _print_json(report: dict) -> int:
    print(json.dumps(report, indent=2, default=str))
    return 0


def _linker(args, cfg: JobConfig):
    from tre_link.api import TreLink

    return TreLink(_session(cfg, args.master), cfg, config_path=args.config)


def _cmd_standardise(args, cfg: JobConfig) -> int:
    result = _linker(args, cfg).standardise()
    return _print_json({"sources": {name: {"version": s.version} for name, s in result.report.sources.items()}})


def _cmd_train(args, cfg: JobConfig) -> int:
    return _print_json({"model_json": _linker(args, cfg).train().model_json})


def _cmd_link(args, cfg: JobConfig) -> int:
    from tre_link.record.registry import describe_model

    model = args.model or cfg.linkage.model
    described = describe_model(model, cfg.tracking_uri) if model else None
    report = _linker(args, cfg).link(model).report.released()
    if described:
        report["model"] = described
    return _print_json(report)


def _cmd_publish(args, cfg: JobConfig) -> int:
    return _print_json({"research_dataset": _linker(args, cfg).publish(args.project).research.path})


def _cmd_run(args, cfg: JobConfig) -> int:
    from tre_link.api import format_summary

    if args.model:
        cfg = cfg.model_copy(update={"linkage": cfg.linkage.model_copy(update={"model": args.model})})
    print(format_summary(_linker(args, cfg).run().summary))
    return 0


def _cmd_refresh(args, cfg: JobConfig) -> int:
    return _print_json(_linker(args, cfg).refresh(args.model).released())


def _cmd_demo(args, cfg: JobConfig) -> int:
    from tre_link import demo
    from tre_link.api import format_summary

    result = demo.run_demo(_session(cfg, args.master), cfg, args.config)
    print(format_summary(result.summary))
    return 0


def _cmd_keygen(args, cfg: JobConfig | None) -> int:
    from tre_link.platform.secrets import write_random_key_file

    write_random_key_file(args.out, overwrite=args.force)
    log.info("keygen: wrote a new random 32-byte key to %s (readable by its owner only)", args.out)
    return 0


def _cmd_reidentify(args, cfg: JobConfig) -> int:
    result = _linker(args, cfg).reidentify(args.project, args.keys, args.reason, requested_by=args.requested_by)
    return _print_json(result.released())


def _cmd_reproduce(args, cfg: JobConfig) -> int:
    result = _linker(args, cfg).reproduce(args.run_id)
    _print_json(result)
    return 0 if result["identical"] else 1


def _cmd_review(args, cfg: JobConfig) -> int:
    linker = _linker(args, cfg)
    if args.action == "sample":
        return _print_json(linker.review_sample().released())
    if not args.labels:
        from tre_link.platform.errors import ConfigError

        raise ConfigError("review ingest: give the filled-in CSV with --labels FILE")
    return _print_json(linker.review_ingest(args.labels))


def _cmd_evaluate(args, cfg: JobConfig) -> int:
    linker = _linker(args, cfg)
    if args.against == "truth":
        if not cfg.truth_path:
            from tre_link.platform.errors import ConfigError

            raise ConfigError(f"{args.config}: no truth_path; evaluate --against labels uses clerical labels")
        from tre_link.platform.delta_io import read_delta
        from tre_link.record.evaluate import evaluate_person_index

        index = read_delta(linker.spark, args.person_index or cfg.output.person_index_table, table="person_index").df
        truth = read_delta(linker.spark, cfg.truth_path, table="truth").df
        return _print_json(evaluate_person_index(index, truth).released())
    estimates = linker.evaluate_labels(args.person_index)
    if estimates is None:
        from tre_link.platform.errors import InputDataError

        raise InputDataError(f"table clerical_labels: none at {cfg.output.clerical_labels_table}; "
                             "draw a sample with `tre-link review sample` and load labels with `review ingest`")
    return _print_json(estimates.released())


def _cmd_approve(args, cfg: JobConfig) -> int:
    from tre_link.record.registry import approve

    return _print_json(approve(cfg.tracking_uri, cfg.mlflow.registered_model, args.version, args.reason,
                               args.approver))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tre-link", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str, needs_config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=needs_config, help="job YAML, e.g. conf/demo.yaml")
        p.add_argument("--master", help="override spark.master from the config (e.g. local[2])")
        p.set_defaults(handler=handler)
        return p

    add("synth", _cmd_synth, "generate synthetic UK sources, opt-outs and a truth table")
    p = add("pseudonymise", _cmd_pseudonymise, "provider side: replace NHS numbers with HMAC tokens", needs_config=False)
    p.add_argument("--input", required=True, help="Delta table to read")
    p.add_argument("--output", required=True, help="Delta table to write")
    p.add_argument("--column", required=True, help="the NHS number column")
    p.add_argument("--extra", nargs="*", default=[], help="further exact-match columns to tokenise")
    p.add_argument("--key-env", default="TRE_LINK_LINKAGE_KEY", help="environment variable holding the shared key")
    p.add_argument("--key-file", help="key file, used when the variable is unset")
    add("standardise", _cmd_standardise, "standardise sources, remove opt-outs, profile quality")
    add("train", _cmd_train, "train the Fellegi-Sunter model")
    p = add("link", _cmd_link, "deterministic pass, probabilistic pass, clustering")
    p.add_argument("--model", help="Splink JSON path or models:/NAME@ALIAS (overrides linkage.model)")
    p = add("publish", _cmd_publish, "write one project's research dataset")
    p.add_argument("--project", required=True)
    p = add("run", _cmd_run, "every stage after synth, as one MLflow run")
    p.add_argument("--model", help="link with this model instead of training: a Splink JSON path or models:/NAME@ALIAS")
    p = add("refresh", _cmd_refresh, "standardise the sources as they are now, link with an existing model carrying "
            "person IDs forward, publish; one MLflow run")
    p.add_argument("--model", help="Splink JSON path or models:/NAME@ALIAS (default: linkage.model, else the "
                                   "approved version, else the model in the linkage zone)")
    add("demo", _cmd_demo, "throwaway keys, synthetic data, then every stage")
    p = add("reproduce", _cmd_reproduce, "rerun a logged run at its Delta versions with its model; compare outputs")
    p.add_argument("run_id")
    p = add("keygen", _cmd_keygen, "write a new strong random key to a file readable by its owner only",
            needs_config=False)
    p.add_argument("--out", required=True, help="the key file to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p = add("reidentify", _cmd_reidentify,
            "linkage team only: map a project's person keys back to source record ids, audited")
    p.add_argument("--project", required=True, help="the project whose person keys these are")
    p.add_argument("--keys", required=True, help="file of person_key values, one a line")
    p.add_argument("--reason", required=True, help="why: kept in the audit table")
    p.add_argument("--requested-by", help="who asked (default: the user running the job); kept in the audit table")

    def described(name: str, handler, help_text: str, example: str) -> argparse.ArgumentParser:
        p = add(name, handler, help_text)
        p.description, p.epilog = help_text[0].upper() + help_text[1:] + ".", f"example: {example}"
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        return p

    p = described(
        "review", _cmd_review, "clerical review: draw borderline pairs to label, or load the labels",
        "tre-link review sample --config conf/demo.yaml; then, with the CSV filled in, "
        "tre-link review ingest --config conf/demo.yaml --labels labels.csv",
    )
    p.add_argument("action", choices=["sample", "ingest"],
                   help="sample: draw pairs around the threshold into the linkage zone (a Delta table, an offline "
                        "labelling page and a CSV); ingest: load a filled-in CSV into clerical_labels")
    p.add_argument("--labels", help="ingest: the CSV of pair_id,label[,reviewer] the page saved or you filled in")
    p = described(
        "evaluate", _cmd_evaluate, "score a person index against the truth table or the clerical labels",
        "tre-link evaluate --config conf/demo.yaml --against labels",
    )
    p.add_argument("--against", choices=["truth", "labels"], default="labels",
                   help="truth: the configured truth_path (synthetic data); labels: clerical labels, with 95%% "
                        "intervals, overall and by subgroup (default)")
    p.add_argument("--person-index", help="Delta path of the person index to score (default: the configured one)")
    p = described(
        "approve", _cmd_approve, "approve a registered model version: move alias `approved` and record why",
        'tre-link approve --config conf/demo.yaml --version 3 --reason "F1 and subgroup gaps reviewed"',
    )
    p.add_argument("--version", required=True, help="the registered model version to approve")
    p.add_argument("--reason", required=True, help="why it is approved: kept as the version's tag")
    p.add_argument("--approver", help="who approves (default: the logged-in user)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        cfg = load_config(args.config) if args.config else None
        return args.handler(args, cfg)
    except TreLinkError as err:
        print(f"tre-link {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
