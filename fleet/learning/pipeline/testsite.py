"""The sealed test site (E, Salar Grande): read by ``bench models`` alone, never to choose anything.

Protocol (docs/models.md, "The sealed evaluation"): every design choice (features, loss
weights, thresholds, the decision rule, calibration) is made on the validation site D; site E
(another layout, the same weaker faults as D, its own seed) scores a finished run, and every
read of it is logged in docs/models.md ("Test-site log": date, commit, figures).

How it stays sealed, in code:

- ``datasets.load_runs`` refuses a sealed site's run without ``datasets.UNSEAL``, which this
  module alone passes; an import-linter contract (pyproject.toml) lets no pipeline module but
  ``bench`` import this one, so training and selection cannot reach the key;
- ``build_datasets`` (what training reads) holds sites A-D only;
- ``training.set_task_data`` refuses a sealed window set for training, and the decision rule
  is chosen on D's stream only.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fleet.learning.pipeline.datasets import (
    HELD_OUT_INTENSITIES,
    UNSEAL,
    DataConfig,
    RunSpec,
    WindowSet,
    load_runs,
    ranges,
    site_sets,
)
from fleet.learning.pipeline.sites import TEST_SITE
from fleet.learning.pipeline.training import (
    FeaturesOnly,
    TrainingRun,
    backbone_gain,
    evaluate_site,
)

# The test shift: as many trucks and hours as D's, the same weaker intensities, its own seed.
TEST_RUN = RunSpec(
    TEST_SITE, 20, 4.0, seed=105, fault_rate=1.0, intensities=ranges(HELD_OUT_INTENSITIES)
)
LOG_HEADING = "### Test-site log"
REPO = Path(__file__).resolve().parents[3]


def test_sets(
    config: DataConfig,
    spec: RunSpec = TEST_RUN,
    *,
    directory: Path | None = None,
    progress: bool = False,
) -> dict[str, WindowSet]:
    """Site E's sets, cut as D's are: ``test_site`` (every truck, the whole shift, a window
    every 10 s), ``test_site_history`` (its past, for the ETA table) and ``test_site_test``."""
    (run,) = load_runs([spec], directory=directory, workers=1, progress=progress, unseal=UNSEAL)
    return site_sets(config, run, "test_site")


def evaluate(
    run: TrainingRun,
    features_only: FeaturesOnly,
    *,
    spec: RunSpec | None = None,
    directory: Path | None = None,
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """The bench's figures on site E: every served head against the baselines, and
    ``backbone_gain`` of the fault and trajectory heads against their features-only
    references (same data, budget and rule procedure)."""
    if run.datasets is None:
        raise ValueError("the run holds no data: train_models made it?")
    spec = spec or TEST_RUN
    sets = test_sets(run.datasets.config, spec, directory=directory)
    stream, history, test = sets["test_site"], sets["test_site_history"], sets["test_site_test"]
    stream_windows, test_windows = stream.windows(), test.windows()
    site = evaluate_site(run.heads, run.rule, stream, stream_windows, history, test, test_windows)
    figures: dict[str, Any] = dict(site.figures)

    # backbone_gain = 1 - error(head on embedding + features) / error(features alone).
    gains, reference = backbone_gain(
        site, features_only, stream, stream_windows, test, test_windows
    )
    figures |= gains
    details = {
        **site.details,
        "features_only": reference,
        "test_run": {
            "site": spec.site,
            "trucks": spec.trucks,
            "hours": spec.hours,
            "seed": spec.seed,
        },
    }
    if plots_dir is not None:
        from fleet.learning.pipeline import plots

        view = SimpleNamespace(
            figures={**run.figures, **figures}, details={**run.details, **details}
        )
        plots.site_evaluation(
            view,
            site.predictions,
            Path(plots_dir) / "test-evaluation.png",
            f"Sealed test site E (weaker faults) against the baselines, version {run.version}",
        )
    return {"figures": figures, "details": details}


def commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files)."""

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            ["git", "-C", str(REPO), *args],  # noqa: S607 (git from PATH, as make does)
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


LOGGED = (
    "fault_f1",
    "fault_f1_baseline",
    "false_alarms_per_truck_hour",
    "fault_recall_brake_fade",
    "fault_lead_s",
    "fault_delay_s_abrupt",
    "backbone_gain_fault",
    "backbone_gain_traj",
    "l1_gain",
    "fewshot_ratio",
    "fewshot_f1",
    "eta_gain",
    "eta_coverage",
    "traj_ade_ratio",
    "payload_mae_pct",
    "train_s",
)


def log_read(figures: dict[str, Any], path: Path, *, now: dt.datetime | None = None) -> str:
    """Append one line for this read of the test site under ``LOG_HEADING`` in ``path``
    (docs/models.md): when, at which commit, the figures. Returns the line."""
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    shown = ", ".join(f"{k} {figures.get(k)}" for k in LOGGED if k in figures)
    line = f"- {when}, commit `{commit()}`: {shown}"
    text = path.read_text() if path.exists() else ""
    if LOG_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{LOG_HEADING}\n"
    head, _, tail = text.partition(LOG_HEADING)
    # The log is the section's list: the new line goes after the last line of it.
    lines = tail.split("\n")
    end = 1
    for i, row in enumerate(lines[1:], start=1):
        if row.startswith("#"):
            break
        if row.strip():
            end = i + 1
    lines.insert(end, line)
    path.write_text(head + LOG_HEADING + "\n".join(lines))
    return line


def run_log_path() -> Path:
    return REPO / "docs" / "models.md"
