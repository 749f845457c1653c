"""`tre-link`: one subcommand per stage. Each parses args, loads config, builds the session,
calls one library function and exits with a status: 0 ok; 1 a check failed; 2 usage or config;
3 bad input data; 4 environment; 5 an unexpected error (see tre_link/platform/errors.py).
Progress goes to stderr, results (JSON, the summary) to stdout, everything else to the log file
under output.root/logs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from tre_link.platform.config import JobConfig, SparkSettings, load_config
from tre_link.platform.errors import EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, TreLinkError

log = logging.getLogger("tre_link")


def _version() -> str:
    import importlib.metadata

    from tre_link import __version__

    def v(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return (f"tre-link {__version__} (pyspark {v('pyspark')}, delta-spark {v('delta-spark')}, "
            f"splink {v('splink')}, mlflow {v('mlflow')})")


def _check_model(model: str | None, cfg: JobConfig) -> None:
    """A models:/ URI (or a model file) is resolved before Spark starts, so a typo costs nothing."""
    from tre_link.record.registry import describe_model

    if model:
        described = describe_model(model, cfg.tracking_uri)
        log.info("model: %s (version %s)", described["model_uri"], described["model_version"])


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
    described = describe_model(model, cfg.tracking_uri) if model else None  # before Spark starts
    report = _linker(args, cfg).link(model).report.released()
    if described:
        report["model"] = described
    return _print_json(report)


def _cmd_blocking_report(args, cfg: JobConfig) -> int:
    return _print_json(_linker(args, cfg).blocking_report().released())


def _cmd_publish(args, cfg: JobConfig) -> int:
    return _print_json({"research_dataset": _linker(args, cfg).publish(args.project).research.path})


def _cmd_run(args, cfg: JobConfig) -> int:
    from tre_link.api import format_summary

    if args.model:
        cfg = cfg.model_copy(update={"linkage": cfg.linkage.model_copy(update={"model": args.model})})
    _check_model(cfg.linkage.model, cfg)
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


def _cmd_doctor(args, cfg: JobConfig | None) -> int:
    from tre_link.doctor import run_checks

    checks = run_checks(cfg)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "everything tre-link needs is in place")
    return EXIT_ENVIRONMENT if failed else EXIT_OK


def _cmd_reproduce(args, cfg: JobConfig) -> int:
    result = _linker(args, cfg).reproduce(args.run_id)
    _print_json(result)
    return EXIT_OK if result["identical"] else EXIT_CHECK_FAILED


def _flags(parent: bool) -> argparse.ArgumentParser:
    """-v/-q, accepted before the subcommand and after it. The subcommands' copies default to
    SUPPRESS, so a flag given before the subcommand is not reset by the subcommand's parser."""
    flags = argparse.ArgumentParser(add_help=False)
    default = {} if parent else {"default": argparse.SUPPRESS}
    flags.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                       help="show debug messages too", **({"default": 0} if parent else default))
    flags.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                       help="show only warnings and errors (and the result)", **default)
    return flags


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EXIT_USAGE (2), as documented."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


EXIT_CODES = ("exit codes: 0 ok; 1 a check failed (reproduce not identical); 2 usage or config error; "
              "3 bad input data; 4 environment (Java, jars, MLflow store); 5 an unexpected error (traceback in "
              "the log file under output.root/logs)")


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
    parser = _Parser(prog="tre-link", description="Record linkage for trusted research environments: "
                     "one subcommand per stage.", epilog=EXIT_CODES, parents=[_flags(parent=True)])
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    flags = _flags(parent=False)

    def add(name: str, handler, help_text: str, example: str, needs_config: bool = True,
            config_help: str = "the job's YAML config, e.g. conf/demo.yaml") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                           epilog=f"example:\n  {example}\n\n{EXIT_CODES}", parents=[flags],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", required=needs_config, help=config_help)
        p.add_argument("--master", help="override spark.master from the config (e.g. local[2])")
        p.set_defaults(handler=handler)
        return p

    add("synth", _cmd_synth, "generate synthetic UK sources, opt-outs and a truth table",
        "tre-link synth --config conf/demo.yaml")
    p = add("pseudonymise", _cmd_pseudonymise, "provider side: replace NHS numbers with HMAC tokens",
            "TRE_LINK_LINKAGE_KEY=... tre-link pseudonymise --input extract --output tokenised --column nhs_number",
            needs_config=False, config_help="a job YAML whose spark section to use (optional)")
    p.add_argument("--input", required=True, help="Delta table to read")
    p.add_argument("--output", required=True, help="Delta table to write")
    p.add_argument("--column", required=True, help="the NHS number column")
    p.add_argument("--extra", nargs="*", default=[], help="further exact-match columns to tokenise")
    p.add_argument("--key-env", default="TRE_LINK_LINKAGE_KEY", help="environment variable holding the shared key")
    p.add_argument("--key-file", help="key file, used when the variable is unset")
    add("standardise", _cmd_standardise, "standardise the sources and profile their quality",
        "tre-link standardise --config conf/demo.yaml")
    add("train", _cmd_train, "train the Fellegi-Sunter model", "tre-link train --config conf/demo.yaml")
    p = add("link", _cmd_link, "deterministic pass, probabilistic pass, clustering",
            "tre-link link --config conf/demo.yaml --model models:/tre-link-demo-model@approved")
    p.add_argument("--model", help="Splink JSON path or models:/NAME@ALIAS (overrides linkage.model)")
    add("blocking-report", _cmd_blocking_report,
        "pairs each predict rule adds (cumulative), largest blocks, and with a truth table the share of true pairs "
        "reached", "tre-link blocking-report --config conf/demo.yaml")
    p = add("publish", _cmd_publish, "write one project's research dataset",
            "tre-link publish --config conf/demo.yaml --project cardio_outcomes")
    p.add_argument("--project", required=True, help="the configured project (projects[].name) to publish")
    p = add("run", _cmd_run, "every stage after synth, as one MLflow run", "tre-link run --config conf/demo.yaml")
    p.add_argument("--model", help="link with this model instead of training: a Splink JSON path or models:/NAME@ALIAS")
    p = add("refresh", _cmd_refresh, "standardise the sources as they are now, link with an existing model carrying "
            "person IDs forward, publish; one MLflow run", "tre-link refresh --config conf/demo.yaml")
    p.add_argument("--model", help="Splink JSON path or models:/NAME@ALIAS (default: linkage.model, else the "
                                   "approved version, else the model in the linkage zone)")
    add("demo", _cmd_demo, "throwaway keys, synthetic data, then every stage", "tre-link demo --config conf/demo.yaml")
    p = add("reproduce", _cmd_reproduce, "rerun a logged run at its Delta versions with its model; compare outputs",
            "tre-link reproduce 0123456789abcdef0123456789abcdef --config conf/demo.yaml")
    p.add_argument("run_id", help="the MLflow run id of the pipeline run to reproduce (see summary.json)")
    p = add("keygen", _cmd_keygen, "write a new strong random key to a file readable by its owner only",
            "tre-link keygen --out keys/project.key", needs_config=False,
            config_help="not used (accepted for symmetry with the other subcommands)")
    p.add_argument("--out", required=True, help="the key file to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p = add("reidentify", _cmd_reidentify,
            "linkage team only: map a project's person keys back to source record ids, audited",
            'tre-link reidentify --config conf/demo.yaml --project cardio_outcomes --keys findings.txt --reason "..."')
    p.add_argument("--project", required=True, help="the project whose person keys these are")
    p.add_argument("--keys", required=True, help="file of person_key values, one a line")
    p.add_argument("--reason", required=True, help="why: kept in the audit table")
    p.add_argument("--requested-by", help="who asked (default: the user running the job); kept in the audit table")
    p = add("review", _cmd_review, "clerical review: draw borderline pairs to label, or load the labels",
            "tre-link review sample --config conf/demo.yaml; then, with the CSV filled in, "
            "tre-link review ingest --config conf/demo.yaml --labels labels.csv")
    p.add_argument("action", choices=["sample", "ingest"],
                   help="sample: draw pairs around the threshold into the linkage zone (a Delta table, an offline "
                        "labelling page and a CSV); ingest: load a filled-in CSV into clerical_labels")
    p.add_argument("--labels", help="ingest: the CSV of pair_id,label[,reviewer] the page saved or you filled in")
    p = add("evaluate", _cmd_evaluate, "score a person index against the truth table or the clerical labels",
            "tre-link evaluate --config conf/demo.yaml --against labels")
    p.add_argument("--against", choices=["truth", "labels"], default="labels",
                   help="truth: the configured truth_path (synthetic data); labels: clerical labels, with 95%% "
                        "intervals, overall and by subgroup (default)")
    p.add_argument("--person-index", help="Delta path of the person index to score (default: the configured one)")
    p = add("approve", _cmd_approve, "approve a registered model version: move alias `approved` and record why",
            'tre-link approve --config conf/demo.yaml --version 3 --reason "F1 and subgroup gaps reviewed"')
    p.add_argument("--version", required=True, help="the registered model version to approve")
    p.add_argument("--reason", required=True, help="why it is approved: kept as the version's tag")
    p.add_argument("--approver", help="who approves (default: the logged-in user)")
    add("doctor", _cmd_doctor, "check Java, Spark, the Delta and Splink jars and, with a config, the MLflow "
        "store, keys (present, never shown) and write access to each zone; say what to fix",
        "tre-link doctor --config conf/demo.yaml", needs_config=False,
        config_help="the job YAML to check too (optional: without it, only the machine is checked)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (usage errors exit 2 from argparse itself)."""
    from tre_link.platform import logs

    args = build_parser().parse_args(argv)
    handlers: list = []
    try:
        cfg = load_config(args.config) if args.config else None
        handlers = logs.configure(args.verbosity, cfg.spark.log_dir if cfg and args.command != "doctor" else None)
        return args.handler(args, cfg)
    except TreLinkError as err:
        print(f"tre-link {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"tre-link {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not the user's doing: the traceback goes to the log file only
        log.debug("unexpected error", exc_info=True)
        where = next((h.baseFilename for h in handlers if isinstance(h, logging.FileHandler)), None)
        print(f"tre-link {args.command}: unexpected error ({type(err).__name__}); this is a bug in tre-link or its "
              f"environment. " + (f"The traceback is in {where}" if where else "Rerun with -v for the traceback"),
              file=sys.stderr)
        if where is None:
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        logs.unconfigure(handlers)


if __name__ == "__main__":
    sys.exit(main())
