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


def _cmd_blocking_report(args, cfg: JobConfig) -> int:
    return _print_json(_linker(args, cfg).blocking_report().released())


def _cmd_publish(args, cfg: JobConfig) -> int:
    return _print_json({"research_dataset": _linker(args, cfg).publish(args.project).research.path})


def _cmd_run(args, cfg: JobConfig) -> int:
    from tre_link.api import format_summary

    if args.model:
        cfg = cfg.model_copy(update={"linkage": cfg.linkage.model_copy(update={"model": args.model})})
    print(format_summary(_linker(args, cfg).run().summary))
    return 0


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
    add("blocking-report", _cmd_blocking_report,
        "pairs each predict rule adds (cumulative), largest blocks, and with a truth table the share of true pairs reached")
    p = add("publish", _cmd_publish, "write one project's research dataset")
    p.add_argument("--project", required=True)
    p = add("run", _cmd_run, "every stage after synth, as one MLflow run")
    p.add_argument("--model", help="link with this model instead of training: a Splink JSON path or models:/NAME@ALIAS")
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
