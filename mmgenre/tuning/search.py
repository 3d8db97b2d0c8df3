"""Searches: config, tuners, resume, trials table, best config; chief/worker launch.

A search config (configs/search/*.yaml) names a base experiment and a space:

    experiment: configs/cnn.yaml
    tuner: random            # random | hyperband | bayesian
    max_trials: 10
    objective: val_micro_f1  # direction max unless the name contains "loss"
    space: {...}             # see mmgenre.tuning.hypermodels
    quick: {max_trials: 2, experiment.train.epochs: 1, experiment.data.limit: 64}

The search directory is keras-tuner's own (overwrite=False), so rerunning the
same command resumes without repeating finished trials. A trial that raises
(NaN loss, out of memory, a bad combination) is recorded as FAILED and the
search goes on.

Distributed (keras-tuner's chief/worker mode): the same command runs
everywhere with ``--role chief`` (only hands out trials) or ``--role worker
--worker-id tuner0``, sharing one directory; ``launch_local`` starts a chief and
N workers on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from typing import Optional

import yaml

from mmgenre import config as config_lib
from mmgenre import files, runs, yaml_config


@dataclasses.dataclass
class SearchConfig:
    """A validated search config (see module docstring)."""

    experiment: str = "configs/cnn.yaml"
    tuner: str = "random"
    max_trials: int = 10
    objective: str = "auto"
    executions_per_trial: int = 1
    hyperband_max_epochs: int = 10
    seed: int = 0
    directory: str = "runs/search/{name}"
    experiment_overrides: dict = dataclasses.field(default_factory=dict)
    space: dict = dataclasses.field(default_factory=dict)
    name: str = "search"

    def check(self):
        config_lib.check_choice("tuner", self.tuner, config_lib.TUNERS)
        if self.max_trials < 1:
            raise config_lib.ConfigError(f"max_trials must be >= 1, got {self.max_trials}")
        return self


def load_search_config(path, overrides=(), quick=False, tuner=None, max_trials=None) -> SearchConfig:
    """Reads a search YAML; ``quick`` applies its quick block ("experiment.x.y" keys
    go to the base experiment), CLI ``tuner``/``max_trials`` win over the file."""
    if not os.path.exists(path):
        raise config_lib.ConfigError(f"search config not found: {path}")
    raw = yaml_config.read_yaml_mapping(path)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    # A search without a quick block runs as it is with --quick (its experiment's own quick
    # block does not apply: searches shrink through "experiment.<key>" entries).
    changes = yaml_config.overrides_of(raw, path, overrides, quick and bool(raw.get("quick")))
    raw.setdefault("experiment_overrides", {})
    for key, value in changes:
        if key.startswith("experiment."):
            raw["experiment_overrides"][key[len("experiment."):]] = value
        else:
            raw[key] = value
    if quick:
        raw["directory"] = raw.get("directory", SearchConfig.directory).replace("{name}", "quick/{name}")
    if tuner:
        raw["tuner"] = tuner
    if max_trials is not None:
        raw["max_trials"] = max_trials
    return yaml_config.from_dict(SearchConfig, raw).check()


def experiment_config(search: SearchConfig) -> config_lib.ExperimentConfig:
    overrides = [f"{k}={json.dumps(v)}" for k, v in search.experiment_overrides.items()]
    return config_lib.load_config(search.experiment, overrides=overrides)


def search_dir(search: SearchConfig) -> str:
    return search.directory.format(name=search.name)


def make_tuner(search: SearchConfig, hypermodel, objective: str):
    import keras_tuner as kt

    direction = config_lib.metric_direction(objective)
    common = dict(hypermodel=hypermodel, objective=kt.Objective(objective, direction),
                  directory=search_dir(search), project_name=runs.SearchFolder.project, overwrite=False,
                  seed=search.seed,
                  # Keep searching past failed trials (NaN, OOM, bad combinations): each is
                  # recorded FAILED in the trials table; a failing trial costs little.
                  max_consecutive_failed_trials=10**9)
    if search.tuner == "hyperband":
        return kt.Hyperband(max_epochs=search.hyperband_max_epochs, factor=3,
                            hyperband_iterations=1, max_retries_per_trial=0, **common)
    cls = kt.RandomSearch if search.tuner == "random" else kt.BayesianOptimization
    return cls(max_trials=search.max_trials, executions_per_trial=search.executions_per_trial,
               max_retries_per_trial=0, **common)


def run_search(search: SearchConfig, out_dir: Optional[str] = None, verbose=None):
    """Runs (or resumes) a search; the chief (or a single process) writes the reports.

    Returns:
        (trials DataFrame, best experiment config) or (None, None) on a worker.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mmgenre.data import prepare
    from mmgenre.models import registry
    from mmgenre.tuning.hypermodels import check_space

    cfg = experiment_config(search)
    check_space(search.space, cfg)
    spec = registry.get(cfg.model.name, cfg.model.params).check_trainable()
    role = os.environ.get("KERASTUNER_TUNER_ID")
    # The chief never trains, but keras-tuner builds the model once everywhere to
    # discover the space, and building needs the data's vocabulary sizes.
    prepared = prepare.prepare_data(cfg.data, spec)
    os.makedirs(search_dir(search), exist_ok=True)
    make_hypermodel = HYPERMODELS[spec.fitting.search]
    hypermodel, objective = make_hypermodel(search, cfg, prepared,
                                            runs.SearchFolder(search_dir(search)).fits)
    tuner = make_tuner(search, hypermodel, objective)
    tuner.search(verbose=verbose if verbose is not None else (1 if sys.stdout.isatty() else 2))
    if role and role != "chief":
        return None, None
    return write_reports(search, tuner, objective, cfg.to_dict(), out_dir or search_dir(search))


def _gradient_hypermodel(search, cfg, prepared, log_path):
    """(hypermodel, objective): each trial fits the model with model.fit, scored on dev."""
    from mmgenre import tasks
    from mmgenre.tuning.hypermodels import GenreHyperModel

    objective = (tasks.get(cfg.data.task).search_objective if search.objective == "auto"
                 else search.objective)
    return GenreHyperModel(cfg.to_dict(), search.space, prepared, objective, log_path), objective


def _cached_feature_hypermodel(search, cfg, prepared, log_path):
    """(hypermodel, objective): features computed once, each trial cross-validates a head."""
    from mmgenre.models import registry
    from mmgenre.training import cached_head, fit
    from mmgenre.tuning.hypermodels import CachedFeatureHyperModel

    objective = CachedFeatureHyperModel.OBJECTIVE
    if search.objective not in ("auto", objective):
        raise config_lib.ConfigError(f"a search over {cfg.model.name!r} is scored on {objective} "
                                     f"(k-fold train mAP); got objective {search.objective!r}")
    if search.tuner == "hyperband":
        raise config_lib.ConfigError("hyperband shares out epochs between trials; a head on cached "
                                     "features trains in seconds: use tuner random or bayesian")
    params = registry.get(cfg.model.name).params(cfg.model.params)
    started = time.time()
    # Trials train heads on the features: the encoders' weights are never loaded.
    x = cached_head.split_blocks(fit.HeadFirst(cfg, prepared, params), params["features"], prepared,
                                 params.get("precision", "float32"))["train"]
    print(f"cached features of {len(prepared.splits['train'][0])} train movies: "
          f"{sum(a.shape[1] for a in x.values())} per movie, {time.time() - started:.1f} s")
    hypermodel = CachedFeatureHyperModel(cfg.to_dict(), search.space, cached_head.as_tensors(x),
                                         prepared.splits["train"][1], log_path)
    return hypermodel, objective


# How a trial is scored (registry ``Fitting.search``) -> the hypermodel that does it.
HYPERMODELS = {"dev": _gradient_hypermodel, "k-fold": _cached_feature_hypermodel}


def read_fit_log(path: str) -> dict:
    """{json of hyperparameter values: log entry} from the hypermodel's fits.jsonl."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return {json.dumps(e["values"], sort_keys=True): e for e in entries}


def trials_table(tuner, objective: str, fit_log: dict):
    import pandas as pd

    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        fit = fit_log.get(json.dumps(trial.hyperparameters.values, sort_keys=True), {})
        row = {"trial": trial.trial_id, "status": trial.status, "objective": trial.score,
               "epochs": fit.get("epochs"), "best_epoch": trial.best_step,
               "seconds": fit.get("seconds"), "worker": fit.get("worker")}
        row.update({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
        rows.append(row)
    return pd.DataFrame(rows)


class SearchFailed(ValueError):
    """No trial of a search completed: there is no best configuration to write."""


def check_some_trial_completed(tuner, best_config_path: str):
    """Raises SearchFailed with the first trial's error when no trial completed, after removing
    a best_config.yaml an earlier run of this search wrote (it would name a failed trial)."""
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    if not trials or any(t.status == "COMPLETED" for t in trials):
        return
    if os.path.exists(best_config_path):
        os.remove(best_config_path)
    lines = [line for line in (trials[0].message or "").strip().splitlines() if line.strip()]
    raise SearchFailed(f"all {len(trials)} trial(s) failed, so there is no best config; the first "
                       f"({trials[0].trial_id}, {trials[0].status}): {lines[-1] if lines else 'no message'}")


def write_reports(search, tuner, objective, base, out_dir):
    """trials.csv/.md, objective-over-trials plot, and best_config.yaml."""
    from mmgenre.evaluation import plots, reports
    from mmgenre.tuning.hypermodels import config_for

    os.makedirs(out_dir, exist_ok=True)
    folder = runs.SearchFolder(out_dir)
    table = trials_table(tuner, objective, read_fit_log(runs.SearchFolder(search_dir(search)).fits))
    files.write_csv(table, folder.trials_table)
    import shlex

    command = "mmgenre " + " ".join(map(shlex.quote, sys.argv[1:]))
    files.write_text(folder.trials_report,
                    f"# Search {search.name}: {search.tuner}, objective {objective}\n\n"
                    f"{reports.provenance(command)}\n\n{reports.to_markdown(table, '.4g')}\n\n"
                    f"![objective over trials]({runs.SearchFolder.objective_plot})\n")
    plots.objective_over_trials(table, objective, folder.objective_plot)
    check_some_trial_completed(tuner, folder.best_config)
    best_hps = tuner.get_best_hyperparameters(1)
    if not best_hps:
        return table, None
    values = {k: v for k, v in best_hps[0].values.items() if k in search.space}
    best = config_for(base, values)
    best.name = f"{search.name}-best"
    best.workdir = "runs/{name}"
    raw = best.to_dict()
    raw["quick"] = {"workdir": "runs/quick/{name}", "data.limit": 64, "train.epochs": 1}
    files.write_text(folder.best_config,
                    f"# Best trial of search {search.name!r} ({search.tuner}, {objective}).\n"
                    f"# Train: mmgenre train --config {folder.best_config}\n"
                    + yaml.safe_dump(raw, sort_keys=False))
    return table, best


# -- distributed -------------------------------------------------------------------------


def worker_argv(config: str, overrides=(), quick=False, tuner=None, max_trials=None, out=None) -> list:
    """The ``mmgenre tune`` arguments every process of a local chief/worker search gets."""
    argv = ["--config", config, *sum((["--set", a] for a in overrides), [])]
    argv += ["--quick"] if quick else []
    argv += ["--tuner", tuner] if tuner else []
    argv += ["--max-trials", str(max_trials)] if max_trials is not None else []
    return argv + (["--out", out] if out else [])


def check_port_free(host: str, port: int):
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise config_lib.ConfigError(f"oracle port {host}:{port} is already in use ({err.strerror}); "
                                         "pick another with --port") from None


def wait_for_chief(host: str, port: int, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise config_lib.ConfigError(f"chief not reachable at {host}:{port} after {timeout:.0f}s; "
                                 "start it first (mmgenre tune --role chief) or check --host/--port")


def role_environment(role: str, host: str, port: int, worker_id: Optional[str] = None) -> dict:
    """keras-tuner's environment for one process of a distributed search."""
    if role == "chief":
        tuner_id = "chief"
    else:
        tuner_id = worker_id or "tuner0"
        if "chief" in tuner_id:
            raise config_lib.ConfigError(f"worker id {tuner_id!r} must not contain 'chief' "
                                         "(keras-tuner would treat it as the chief)")
    return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": host,
            "KERASTUNER_ORACLE_PORT": str(port)}


def launch_local(argv_base: list, workers: int, host: str = "127.0.0.1", port: int = 8000,
                 log_dir: Optional[str] = None, timeout: Optional[float] = None) -> int:
    """Starts a chief and ``workers`` workers on this machine; waits for all.

    ``argv_base`` is the ``mmgenre tune`` argument list without --role.
    """
    check_port_free(host, port)
    log_dir = log_dir or "runs/search/logs"
    os.makedirs(log_dir, exist_ok=True)
    exe = [sys.executable, "-m", "mmgenre.cli", "tune", *argv_base, "--host", host, "--port", str(port)]
    procs = []
    with open(os.path.join(log_dir, runs.SearchFolder.PROCESS_LOG.format(role="chief")), "w") as log:
        procs.append(subprocess.Popen([*exe, "--role", "chief"], stdout=log, stderr=subprocess.STDOUT))
    for i in range(workers):
        with open(os.path.join(log_dir, runs.SearchFolder.PROCESS_LOG.format(role=f"tuner{i}")), "w") as log:
            procs.append(subprocess.Popen([*exe, "--role", "worker", "--worker-id", f"tuner{i}"],
                                          stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise
    return max(codes)


def tune(config: str, overrides=(), quick=False, tuner=None, max_trials=None, out=None, workers=0,
         role=None, host="127.0.0.1", port=8000, worker_id=None, chief_timeout=60.0):
    """Runs the search of ``config`` as `mmgenre tune` asks: here, as the chief or a worker of a
    chief/worker search (``role``), or with ``workers`` local worker processes and a chief.

    Returns (exit code, the search folder holding best_config.yaml, or None for a worker).
    """
    from mmgenre.evaluation.reports import to_markdown

    search = load_search_config(config, overrides, quick, tuner, max_trials)
    if out:  # the trials' state follows --out, so two searches never share trials
        runs.check_report_dir(out)
        search.directory = out.replace("{", "{{").replace("}", "}}")
    folder = out or search_dir(search)
    if workers:
        argv = worker_argv(config, overrides, quick, tuner, max_trials, out)
        logs = runs.SearchFolder(search_dir(search)).logs
        code = launch_local(argv, workers, host, port, logs)
        print(f"chief and {workers} workers finished (exit {code}); logs in {logs}")
        return code, None if code else folder
    if role:
        os.environ.update(role_environment(role, host, port, worker_id))
        if role == "chief":
            check_port_free(host, port)
        else:
            wait_for_chief(host, port, chief_timeout)
    table, best = run_search(search, out)
    if table is None:
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} finished")
        return 0, None
    print(to_markdown(table, ".4g"))  # learning rates like 0.0003 stay readable
    print(f"trials table, plot and best_config.yaml in {folder}")
    return 0, folder if best is not None else None


def retrain_best(folder: str) -> str:
    """Trains the best trial's config (``folder``/best_config.yaml) into ``folder``/best, beside
    the search it came from; returns that run folder."""
    from mmgenre.training.trainer import train_and_evaluate

    run_dir = runs.SearchFolder(folder).best_run
    train_and_evaluate(config_lib.load_config(runs.SearchFolder(folder).best_config), run_dir)
    return run_dir
