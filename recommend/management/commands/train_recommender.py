"""`python manage.py train_recommender --algorithm {als,ials,bpr,item_knn,ease,popular,category_popular} [--evaluate]
[--json]`.

Without --dataset: trains on the marketplace's events (needs an approved
`recommendation` activity), evaluates on a per-consumer temporal hold-out
against category popularity (the baseline, "popular in the consumer's own
categories") and global popularity, and on a temporal hold-out (one cut in
time), stores the model and activates it if it beat category popularity.
With --evaluate only the hold-out evaluation runs and no model is stored.

`--dataset movielens PATH` runs protocol (a), Microsoft Recommenders'
MovieLens 100K benchmark (stratified 75/25 per user, seed 42, top-10 among
items unseen in training), on the files in PATH; it reads no database.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from recommend.algorithms import ALGORITHMS, algorithm_create
from recommend.evaluation import DEFAULT_RATIO, DEFAULT_SEED, evaluate, movielens_holdout, movielens_load
from recommend.memory import MemoryBudgetExceeded, megabytes

METRIC_COLUMNS = (
    ("precision_at_k", "P@{k}"),
    ("recall_at_k", "R@{k}"),
    ("ndcg_at_k", "nDCG@{k}"),
    ("map", "MAP"),
    ("map_at_k", "MAP@{k}"),
)


class Command(BaseCommand):
    help = "Train a recommender and print its hold-out metrics (or run the MovieLens protocol)."

    def add_arguments(self, parser):
        parser.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
        parser.add_argument("--params", default="{}", help="algorithm parameters as JSON, e.g. '{\"l2\": 500}'")
        parser.add_argument("--evaluate", action="store_true", help="evaluate on the hold-out only; store nothing")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
        parser.add_argument(
            "--dataset", nargs=2, metavar=("NAME", "PATH"), help="run protocol (a) on a public data set: movielens PATH"
        )
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument(
            "--test-fraction", type=float, default=0.2, help="protocol (b): share held out per consumer"
        )
        parser.add_argument("--threads", type=int, default=None, help="CPU threads (default settings.BLAS_THREADS)")
        parser.add_argument("--force", action="store_true", help="train even if the data did not change")

    def handle(self, *args, **options):
        try:
            params = json.loads(options["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON (column {exc.colno}): {exc.msg}") from None
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        try:
            algorithm_create(options["algorithm"], **params)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            if options["dataset"]:
                name, path = options["dataset"]
                if name != "movielens":
                    raise CommandError(f"unknown dataset {name!r}; supported: movielens")
                report = self._movielens(options["algorithm"], params, path, options["k"], options["threads"])
            elif options["evaluate"]:
                report = self._evaluate(options, params)
            else:
                report = self._train(options, params)
        except MemoryBudgetExceeded as exc:
            run = f" (training run {exc.run_id} recorded as failed)" if exc.run_id else ""
            raise CommandError(f"{exc}{run}") from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self._print_table(report)

    def _movielens(self, algorithm: str, params: dict, path: str, k: int, threads: int | None) -> dict:
        try:
            ratings = movielens_load(path)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        holdout, mask = movielens_holdout(ratings)
        rows = {}
        for name, model_params in ((algorithm, params), ("popular", {})):
            if name in rows:
                continue
            started = time.perf_counter()
            model = algorithm_create(name, threads=threads, **model_params).fit(holdout.train)
            metrics = evaluate(model, holdout, k=k).as_dict()
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            rows[name] = {"params": model.params, "metrics": metrics, "memory": model.fit_info}
        return {
            "protocol": "movielens-100k",
            "split": {
                "method": "python_stratified_split",
                "ratio": DEFAULT_RATIO,
                "seed": DEFAULT_SEED,
                "train_rows": int(mask.sum()),
                "test_rows": int((~mask).sum()),
                "users": int(holdout.user_ids.size),
                "train_items": int(holdout.item_ids.size),
            },
            "k": k,
            "algorithm": algorithm,
            "memory": rows[algorithm]["memory"],
            "results": rows,
        }

    def _evaluate(self, options: dict, params: dict) -> dict:
        from privacy.services import ProcessingNotPermitted, processing_basis_require
        from recommend.services import recommender_evaluate

        try:
            processing_basis_require(purpose="recommendation")
        except ProcessingNotPermitted as exc:
            raise CommandError(str(exc)) from None
        config = self._config(options, params)
        report = recommender_evaluate(config=config, threads=options["threads"])
        return {
            "protocol": "temporal",
            "test_fraction": config.test_fraction,
            "k": config.k,
            "algorithm": config.algorithm,
            "results": _results(config.algorithm, config.params, report.as_dict(config)),
            "temporal_results": _results(config.algorithm, config.params, report.as_dict(config).get("temporal", {})),
            "beats_baseline": report.beats_baseline,
            "memory": report.memory,
        }

    def _train(self, options: dict, params: dict) -> dict:
        from privacy.services import ProcessingNotPermitted
        from recommend.services import recommender_train

        config = self._config(options, params)
        try:
            run = recommender_train(
                config=config, actor="command:train_recommender", force=options["force"], threads=options["threads"]
            )
        except ProcessingNotPermitted as exc:
            raise CommandError(str(exc)) from None
        metrics = run.metrics or {}
        model = getattr(run, "model", None) if run.status == "succeeded" else None
        return {
            "protocol": "temporal",
            "test_fraction": config.test_fraction,
            "k": config.k,
            "algorithm": config.algorithm,
            "run": run.pk,
            "status": run.status,
            "model": model.pk if model else None,
            "activated": bool(model and model.is_active),
            "memory": metrics.get("memory", {}),
            "data_snapshot": run.data_snapshot,
            "results": _results(config.algorithm, config.params, metrics),
            "temporal_results": _results(config.algorithm, config.params, metrics.get("temporal", {})),
            "beats_baseline": run.beats_baseline,
        }

    def _config(self, options: dict, params: dict):
        from recommend.services import training_config

        try:
            return training_config(
                algorithm=options["algorithm"], params=params, test_fraction=options["test_fraction"], k=options["k"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def _print_table(self, report: dict) -> None:
        k = report["k"]
        if report["protocol"] == "movielens-100k":
            split = report["split"]
            self.stdout.write(
                f"MovieLens 100K, stratified {split['ratio']:.0%}/{1 - split['ratio']:.0%} per user, "
                f"seed {split['seed']}: {split['train_rows']:,} training rows, {split['test_rows']:,} test rows, "
                f"{split['users']:,} users, top-{k} among unseen items"
            )
        else:
            self.stdout.write(
                f"Per-consumer hold-out: the last {report['test_fraction']:.0%} of each consumer's events "
                "(the activation rule's protocol)"
            )
        for key in ("run", "status", "model", "activated"):
            if key in report:
                self.stdout.write(f"{key}: {report[key]}")
        memory = report.get("memory") or {}
        if memory:
            line = (
                f"memory: about {megabytes(memory['memory_estimate_bytes'])} planned, "
                f"budget {megabytes(memory['memory_budget_bytes'])}"
            )
            if "items_kept" in memory:
                line += f"; {memory['items_kept']:,} of {memory['items']:,} products kept"
                if memory.get("items_limited_by"):
                    line += f" (limited by {memory['items_limited_by']})"
            self.stdout.write(line)
        self._print_results(report["results"], k)
        if report.get("temporal_results"):
            self.stdout.write(
                f"Temporal: one cut in time, the latest {report['test_fraction']:.0%} of all events held out"
            )
            self._print_results(report["temporal_results"], k)
        if "beats_baseline" in report:
            bar = "global popularity" if report["algorithm"] == "category_popular" else "category popularity"
            self.stdout.write(f"beats the baseline ({bar}): {report['beats_baseline']}")

    def _print_results(self, results: dict, k: int) -> None:
        headers = ["algorithm", *[label.format(k=k) for _, label in METRIC_COLUMNS], "users", "filled"]
        rows: list[list[str]] = []
        for name, row in results.items():
            metrics = row["metrics"]
            if not metrics:
                rows.append([name, *["-"] * len(METRIC_COLUMNS), "-", "-"])
                continue
            filled = metrics.get("filled_from_baseline")
            rows.append(
                [
                    name,
                    *[f"{metrics[key]:.4f}" for key, _ in METRIC_COLUMNS],
                    str(metrics["users"]),
                    "-" if not filled else f"{filled:.0%}",
                ]
            )
        widths = [max(len(h), *(len(cells[i]) for cells in rows)) for i, h in enumerate(headers)]
        self.stdout.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for cells in rows:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


def _results(algorithm: str, params, metrics: dict) -> dict:
    """The model, category popularity and global popularity rows of one protocol (the model once if it is
    one of the baselines). `filled` is the share of lists the model left partly to the baseline."""
    if not metrics:
        return {}
    rows = {algorithm: {"params": dict(params), "metrics": metrics.get("model", {})}}
    rows.setdefault("category_popular", {"params": {}, "metrics": metrics.get("baseline", {})})
    rows.setdefault("popular", {"params": {}, "metrics": metrics.get("popular", {})})
    return rows
