"""The medical models against baselines, the clinic's inheritance gain, and serving costs.

Everything runs in one process, on one split, in one run (docs/MEDICAL.md quotes it):

1. quality: on the 331 patients, split by patient hash (test_fraction 0.2, as in
   profiles/medical.toml), for diagnosis and treatment: the most frequent labels, a
   one-vs-rest logistic regression over bag-of-codes (scikit-learn, C=1, threshold 0.5),
   the same regression with C and the threshold tuned on heirloom's validation folds of
   the training patients (a peer tuned exactly as heirloom is), and heirloom's model.
   With each table, heirloom's recall@5 minus the C=1 regression's, with a 95% paired
   bootstrap interval over test patients (how much of a difference is noise).
   Then allergy safety: every test patient given a penicillin allergy, violations counted.
2. clinic: a parent fitted on one hash half of the patients (the cohort hash), a clinic on
   the other half with 10, 20 and 40 training patients (the first by hash) and half of
   its patients as test: from scratch vs inherited. Both directions of the halves.
3. serve: `heirloom train medical` (wall time, peak memory; reading the data alone as the
   baseline), then `heirloom serve medical`: start-up, record.summary latency against the
   `_health` floor, predict latency per request, and throughput with 1 and 64 in flight.

    .venv/bin/python bench/medical.py [--parts quality,clinic,serve] [--sizes 10,20,40]

Needs the `bench` extra (scikit-learn). The machine may be shared: compare rows of one
run, not runs of different days.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
from options import (
    add_data_option,
    child_failed,
    choice_list,
    positive_float,
    positive_int,
    positive_ints,
    require_data,
    scratch,
)

from heirloom_plugins.fhir.parse import FhirDataError
from heirloom_plugins.fhir.source import FhirSource
from heirloom_plugins.fhir.splits import Splitter, first_by_hash
from heirloom_plugins.medical.decision import THRESHOLDS, fold_of
from heirloom_plugins.medical.features import age_bucket
from heirloom_plugins.medical.metrics import multilabel_metrics
from heirloom_plugins.medical.model import DiagnosisModel, MultiLabelModel, Query
from heirloom_plugins.medical.patients import age_at
from heirloom_plugins.medical.safety import conflicts, ingredients, substances
from heirloom_plugins.medical.tasks import DIAGNOSIS, TREATMENT, Task
from heirloom_plugins.medical.treatment import TreatmentModel

REPO = Path(__file__).resolve().parent.parent
FOLDER = "fhir-synthea-smart-r4-331/bundles"
PARTS = ("quality", "clinic", "serve")
READY_TIMEOUT = 600  # seconds for `heirloom serve medical` to say it is ready (it indexes the records)
C_GRID = (0.1, 0.3, 1.0, 3.0)
MODELS: dict[str, type[MultiLabelModel]] = {"diagnosis": DiagnosisModel, "treatment": TreatmentModel}
TASKS = {"diagnosis": DIAGNOSIS, "treatment": TREATMENT}
COLUMNS = ("micro_precision", "micro_recall", "micro_f1", "macro_f1", "recall_at_5", "jaccard")


# -- baselines --------------------------------------------------------------------------------
def bag(one: Any, task: Task) -> dict[str, float]:
    """Bag-of-codes: the codes a task may read (tasks.py), log-counted; sex, age band, visit type."""
    found: Counter[str] = Counter()
    found[f"sex:{one.record.gender}"] = 1
    age = age_at(one.record, one.start)
    found[f"age:{age_bucket(age) if age is not None else '?'}"] = 1
    if task.encounter:
        found[f"class:{one.encounter.value}"] = found[f"type:{one.encounter.code}"] = 1
    found.update(f"now:{e.code}" for e in one.at if e.kind in task.current and e.code)
    found.update(f"before:{e.code}" for e in one.before if e.kind in task.history and e.code)
    return {name: math.log1p(count) for name, count in found.items()}


def decided(probabilities, threshold: float) -> list[set[int]]:
    """heirloom's decision rule before its floor (the baselines keep it): at or above the threshold, and always
    the best. heirloom's own answers select the best only from its floor (docs/MEDICAL.md, "Decision")."""
    return [{j for j, p in enumerate(row) if p >= threshold} | {int(row.argmax())} for row in probabilities]


def recall_at_5_each(truth, ranking) -> list[float]:
    """Each example's recall@5 (for the paired interval)."""
    return [len(true.intersection(order[:5])) / len(true) for true, order in zip(truth, ranking, strict=True)]


def scored(truth, chosen, ranking, extra: dict | None = None) -> dict[str, Any]:
    """The report's figures, plus each example's recall@5."""
    return {
        **multilabel_metrics(truth, chosen, ranking),
        "recall_at_5_each": recall_at_5_each(truth, ranking),
        **(extra or {}),
    }


def paired_interval(ours: list[float], theirs: list[float], patients: list[str], rounds: int = 2000) -> str:
    """Mean of ``ours - theirs`` over examples with a 95% interval from a paired bootstrap
    over patients (a patient's encounters resampled together: they are not independent)."""
    import random

    by_patient: dict[str, list[float]] = {}
    for patient, a, b in zip(patients, ours, theirs, strict=True):
        by_patient.setdefault(patient, []).append(a - b)
    groups = list(by_patient.values())
    draw = random.Random(0)
    means = []
    for _ in range(rounds):
        picked = [value for group in draw.choices(groups, k=len(groups)) for value in group]
        means.append(sum(picked) / len(picked))
    means.sort()
    low, high = means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]
    return f"{sum(ours) / len(ours) - sum(theirs) / len(theirs):+.4f} (95% interval {low:+.4f} .. {high:+.4f})"


class Baselines:
    """Most frequent labels and one-vs-rest logistic regression on one task's examples."""

    def __init__(self, task: Task, train: list, test: list):
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.preprocessing import MultiLabelBinarizer

        self.train = list(task.examples(train))
        self.test = list(task.examples(test))
        self.labels = MultiLabelBinarizer().fit([labels for _, labels in self.train])
        self.vectors = DictVectorizer().fit([bag(one, task) for one, _ in self.train])
        self.x = self.vectors.transform([bag(one, task) for one, _ in self.train])
        self.y = self.labels.transform([labels for _, labels in self.train])
        self.x_test = self.vectors.transform([bag(one, task) for one, _ in self.test])
        self.truth = [set(labels) for _, labels in self.test]

    def _named(self, chosen: list[set[int]], probabilities) -> tuple[list[set[str]], list[list[str]]]:
        classes = self.labels.classes_
        ranking = [[classes[j] for j in row.argsort()[::-1][:10]] for row in probabilities]
        return [{classes[j] for j in row} for row in chosen], ranking

    def most_frequent(self) -> dict[str, Any]:
        import numpy as np

        frequency = self.y.mean(0)
        per_example = max(1, round(float(self.y.sum(1).mean())))
        probabilities = np.tile(frequency, (len(self.test), 1))
        chosen = [set(frequency.argsort()[::-1][:per_example].tolist()) for _ in self.test]
        return scored(self.truth, *self._named(chosen, probabilities))

    def _regression(self, c: float, x, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # labels absent from a fold get a constant predictor
            return OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)).fit(x, y)

    def logistic(self, c: float = 1.0, threshold: float = 0.5, top1: bool = False) -> dict[str, Any]:
        model = self._regression(c, self.x, self.y)
        probabilities = model.predict_proba(self.x_test)
        if top1:
            chosen = decided(probabilities, threshold)
        else:
            chosen = [{j for j, p in enumerate(row) if p >= threshold} for row in probabilities]
        return scored(self.truth, *self._named(chosen, probabilities), {"c": c, "threshold": threshold})

    def tuned_logistic(self, folds: int = 5) -> dict[str, Any]:
        """C and the threshold chosen on heirloom's validation folds (micro-F1, top-1 rule)."""
        import numpy as np

        patients = [one.record.id for one, _ in self.train]
        groups = np.array([fold_of(p, folds) for p in patients])
        best = None
        for c in C_GRID:
            oof = np.zeros(self.y.shape)
            for fold in range(folds):
                held = groups == fold
                oof[held] = self._regression(c, self.x[~held], self.y[~held]).predict_proba(self.x[held])
            for threshold in THRESHOLDS:
                chosen = decided(oof, threshold)
                tp = sum(int(self.y[i, j]) for i, row in enumerate(chosen) for j in row)
                f1 = 2 * tp / (sum(map(len, chosen)) + self.y.sum())
                if best is None or f1 > best[0]:
                    best = (f1, c, threshold)
        return self.logistic(best[1], best[2], top1=True)


# -- parts ------------------------------------------------------------------------------------
def read(data: Path) -> list:
    began = time.perf_counter()
    try:
        records = list(FhirSource(path=str(data / FOLDER)).records())
    except FhirDataError as exc:
        sys.exit(f"medical.py: error: {exc}")
    print(f"read {len(records)} patients in {time.perf_counter() - began:.1f}s\n")
    return records


def table(title: str, rows: dict[str, dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    names = ("micro P", "micro R", "micro F1", "macro F1", "recall@5", "jaccard", *extra)
    width = max(len(title), *(len(name) for name in rows))
    print(f"{title:<{width}} " + " ".join(f"{n:>9}" for n in names))
    for name, row in rows.items():
        cells = [f"{row[key]:>9.3f}" for key in COLUMNS] + [f"{row.get(key, float('nan')):>9.3g}" for key in extra]
        print(f"{name:<{width}} " + " ".join(cells))
    print()


def with_penicillin_allergy(record: Any) -> Any:
    allergy = attrs.evolve(record.timeline[0], kind="allergy", code="bench:penicillin", display="Allergy to penicillin")
    return attrs.evolve(record, timeline=(*record.timeline, allergy))


def violations(chosen: list[set[str]], names: dict[str, str]) -> int:
    """Chosen drugs that a penicillin allergy rules out (every patient has one here)."""
    ruled_out = substances("Allergy to penicillin")
    return sum(1 for row in chosen for code in row if conflicts(ingredients(names.get(code)), ruled_out))


def quality(records: list) -> None:
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    print(f"quality: {len(train)} training and {len(test)} test patients (split by patient hash, 20% test)\n")
    for name, cls in MODELS.items():
        task = TASKS[name]
        baselines = Baselines(task, train, test)
        rows = {"most frequent labels": baselines.most_frequent()}
        began = time.perf_counter()
        rows["logistic regression (C=1, t=0.5)"] = baselines.logistic()
        rows["logistic regression (C=1, t=0.5)"]["fit_s"] = time.perf_counter() - began
        began = time.perf_counter()
        rows["logistic regression (C, t tuned)"] = baselines.tuned_logistic()
        rows["logistic regression (C, t tuned)"]["fit_s"] = time.perf_counter() - began
        model = cls(data="patients")
        began = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - began
        rows["heirloom"] = {**model.evaluate(test).metrics, "fit_s": fit_s}
        answers = model.predict([Query(one.record, one.encounter.id) for one, _ in baselines.test])
        ranked = [[item["code"] for item in answer["codes"]] for answer in answers]
        ours = recall_at_5_each(baselines.truth, ranked)
        print(f"{name}: {len(baselines.train)} training and {len(baselines.test)} test encounters")
        table(name, rows, ("fit_s",))
        peer = rows["logistic regression (C=1, t=0.5)"]["recall_at_5_each"]
        patients = [one.record.id for one, _ in baselines.test]
        print(f"recall@5, heirloom - logistic regression (C=1): {paired_interval(ours, peer, patients)}\n")
        if name == "treatment":
            allergic = [with_penicillin_allergy(r) for r in test]
            names = model.state().metadata["names"]
            answers = model.predict([Query(one.record, one.encounter.id) for one, _ in TREATMENT.examples(allergic)])
            ours = [{i["code"] for i in a["codes"] if i["selected"]} for a in answers]
            peer = Baselines(task, train, allergic)
            probabilities = peer._regression(1.0, peer.x, peer.y).predict_proba(peer.x_test)
            theirs = [{peer.labels.classes_[j] for j, p in enumerate(row) if p >= 0.5} for row in probabilities]
            print(
                f"allergy safety, every test patient given a penicillin allergy ({len(ours)} encounters):\n"
                f"  heirloom: {violations(ours, names)} violations, "
                f"{sum(len(a['blocked']) for a in answers)} drugs withheld; "
                f"logistic regression: {violations(theirs, names)} violations\n"
                f"  on the data as recorded: heirloom {rows['heirloom']['allergy_violations']} violations\n"
            )


def clinic(records: list, sizes: list[int]) -> None:
    print("clinic: parent on one hash half, clinic on the other (half of its patients as test)\n")
    halves = ((0.0, 0.5), (0.5, 1.0))
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for direction in (0, 1):
        home, away = halves[direction], halves[1 - direction]
        parent_side, clinic_side = Splitter(0.2, 0.0, home).side, Splitter(0.5, 0.0, away).side
        parent_train = [r for r in records if parent_side(r.id) == "train"]
        clinic_test = [r for r in records if clinic_side(r.id) == "test"]
        clinic_train = [r for r in records if clinic_side(r.id) == "train"]
        for name, cls in MODELS.items():
            parent = cls(data="patients")
            parent.fit(parent_train)
            state = parent.state()
            for size in sizes:
                chosen = list(first_by_hash(clinic_train, size))
                for start in ("scratch", "inherited"):
                    model = cls(data="patients")
                    model.fit(chosen, parent=state if start == "inherited" else None)
                    results.setdefault((name, size, start), []).append(model.evaluate(clinic_test).metrics)
        print(
            f"  halves {home} -> {away}: parent on {len(parent_train)} patients, clinic test {len(clinic_test)} "
            f"patients, {len(clinic_train)} training patients available"
        )
    print()
    header = f"{'model':<10} {'patients':>8} {'start':<10} {'micro F1':>9} {'recall@5':>9} {'jaccard':>9}"
    header += "  (means of both directions; F1 of each)"
    print(header, "-" * len(header), sep="\n")
    for (name, size, start), runs in results.items():
        each = " / ".join(f"{r['micro_f1']:.3f}" for r in runs)
        means = [statistics.mean(r[key] for r in runs) for key in ("micro_f1", "recall_at_5", "jaccard")]
        print(f"{name:<10} {size:>8} {start:<10} " + " ".join(f"{m:>9.3f}" for m in means) + f"  F1 {each}")
    print()


# -- serving ----------------------------------------------------------------------------------
def timed_child(command: list[str], env: dict[str, str], errors: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process; its stderr goes to the file ``errors``
    (a pipe read only at the end would block a child that warns a lot). A failed child is said
    with its stderr, and the bench exits 1: its time is not a training figure."""
    began = time.perf_counter()
    with errors.open("w+") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        if (code := os.waitstatus_to_exitcode(status)) != 0:
            stderr.seek(0)
            child_failed(command, code, stderr.read())
    return wall, usage.ru_maxrss / 1024


def wait_ready(client: Any, daemon: subprocess.Popen, log: Path, command: list[str]) -> None:
    """Until the daemon says it is ready; if it exits first, or takes over READY_TIMEOUT seconds,
    its log is said and the bench exits 1 (it used to wait forever on a daemon that had exited)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if (code := daemon.poll()) is not None:
            child_failed(command, code, log.read_text())
        if time.monotonic() > deadline:
            child_failed(command, -1, f"not ready after {READY_TIMEOUT}s; its log:\n{log.read_text()}")
        try:
            if client.call("_ready", timeout=1)["ready"]:
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)


def latencies(client, route: str, bodies: list[Any], count: int) -> list[float]:
    samples = []
    for i in range(count):
        began = time.perf_counter()
        client.call(route, bodies[i % len(bodies)])
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def throughput(client, route: str, bodies: list[Any], in_flight: int, seconds: float) -> float:
    pending = {client.submit(route, bodies[i % len(bodies)]) for i in range(in_flight)}
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
            future.result()
            done += 1
            pending.add(client.submit(route, bodies[(done + in_flight) % len(bodies)]))
    elapsed = time.perf_counter() - began
    concurrent.futures.wait(pending)
    return done / elapsed


def serve(data: Path, requests: int, seconds: float) -> None:
    from heirloom import Client

    home = scratch("heirloom-bench-medical-")
    env = {**os.environ, "HEIRLOOM_HOME": str(home), "HEIRLOOM_DATA": str(data)}
    heirloom = [sys.executable, "-m", "heirloom"]
    errors = home / "child.err"
    read_s, read_mb = timed_child([*heirloom, "data", "stats", "medical", "patients"], env, errors)
    train_s, train_mb = timed_child([*heirloom, "train", "medical"], env, errors)
    print("training at 331 patients (one process each, the machine as it was):")
    print(
        f"  heirloom data stats medical patients (reading the FHIR set once): {read_s:6.1f}s, peak {read_mb:6.0f} MiB"
    )
    print(
        f"  heirloom train medical (both models; reads the set twice each): {train_s:6.1f}s, peak {train_mb:6.0f} MiB\n"
    )
    address = f"ipc://{home}/medical.sock"
    log = (home / "serve.log").open("w")
    began = time.perf_counter()
    command = [*heirloom, "serve", "medical", "--bind", address]
    daemon = subprocess.Popen(command, env=env, stderr=log)
    try:
        with Client(address, timeout=60) as client:
            wait_ready(client, daemon, home / "serve.log", command)
            print(f"heirloom serve medical: ready in {time.perf_counter() - began:.1f}s (index of 331 patients)\n")
            patients = [p["id"] for p in client.call("record.patients", {"limit": 100})["patients"]]
            patients += [p["id"] for p in client.call("record.patients", {"offset": 100, "limit": 100})["patients"]]
            bodies = [{"patient": p} for p in patients]
            rows = {
                "_health (the floor)": latencies(client, "_health", [None], requests),
                "record.summary": latencies(client, "record.summary", bodies, requests),
                "record.search": latencies(client, "record.search", [{"text": "hypertension", "k": 10}], requests),
                "diagnosis.predict": latencies(client, "diagnosis.predict", bodies, requests),
                "treatment.recommend": latencies(client, "treatment.recommend", bodies, requests),
            }
            print(f"{'route':<22} {'median ms':>10} {'p99 ms':>8} {'x floor':>8}   ({requests} sequential requests)")
            floor = statistics.median(rows["_health (the floor)"])
            for route, samples in rows.items():
                p99 = sorted(samples)[int(0.99 * (len(samples) - 1))]
                median = statistics.median(samples)
                print(f"{route:<22} {median:>10.2f} {p99:>8.2f} {median / floor:>8.1f}")
            print()
            print(f"{'route':<22} {'in flight':>9} {'req/s':>9} {'vs 1':>6}")
            for route in ("diagnosis.predict", "treatment.recommend"):
                single = throughput(client, route, bodies, 1, seconds)
                for in_flight in (1, 64):
                    rate = single if in_flight == 1 else throughput(client, route, bodies, in_flight, seconds)
                    print(f"{route:<22} {in_flight:>9} {rate:>9.0f} {rate / single:>6.1f}")
            stats = client.call("_stats")
            sizes = {r: s.get("batch_size") for r, s in stats.get("routes", {}).items() if s.get("batch_size")}
            if sizes:
                print(f"\nbatch sizes from _stats: {sizes}")
    finally:
        daemon.terminate()
        daemon.wait(60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", type=choice_list(PARTS), default=list(PARTS), help="comma-separated, from quality, clinic, serve"
    )
    parser.add_argument(
        "--sizes", type=positive_ints, default=[10, 20, 40], help="clinic training patients (comma list)"
    )
    parser.add_argument("--requests", type=positive_int, default=300, help="sequential requests per route")
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="seconds per throughput measurement")
    add_data_option(parser)
    args = parser.parse_args()
    require_data(parser, args.data, FOLDER)
    import torch

    torch.set_num_threads(1)  # what profiles/medical.toml gives the models
    parts = args.parts
    began = time.perf_counter()
    if "quality" in parts or "clinic" in parts:
        records = read(args.data)
        if "quality" in parts:
            quality(records)
        if "clinic" in parts:
            clinic(records, args.sizes)
    if "serve" in parts:
        serve(args.data, args.requests, args.seconds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nbench: {time.perf_counter() - began:.0f}s, peak {usage.ru_maxrss / 1024:.0f} MiB in this process")


if __name__ == "__main__":
    main()
