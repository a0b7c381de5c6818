"""A run folder as a Hugging Face Hub model repo: what a run folder holds, its model card (README.md), `mstt push`,
and `--run USER/NAME` (a run downloaded into the Hub cache and used read-only, never trained into).

A run folder holds run.json (the fingerprint of the experiment that trained it), experiment.yaml (that experiment's
config, resolved), data.json, one folder per trained component (model.safetensors + config.json + its card),
reports/ and logs/ of the training, eval JSONs written into it, README.md, and .training/ (resumable loop state,
never uploaded).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from huggingface_hub import HfApi, ModelCard, ModelCardData, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, LocalTokenNotFoundError

from mstt.agent.core.io import RESULT_FILE_MODE, portable_path, write_json_atomic
from mstt.skills.checkpoint import CARD_NAME, CONFIG_NAME, LIBRARY_NAME, WEIGHTS_NAME

RUN_FILE = "run.json"
"""The run folder's record of the experiment that trains into it (its fingerprint)."""
CONFIG_FILE = "experiment.yaml"
"""The experiment config the run was trained with, resolved: `extends:` merged and overrides applied."""
DATA_FILE = "data.json"
"""Statistics of the source data the run trained on."""
REPORTS_DIR = "reports"
LOGS_DIR = "logs"
"""What each stage (or sub-stage) logged while training: NAME.csv, and its tracker's files (tensorboard/NAME/)."""
TRAINING_DIR = ".training"
"""Resumable training state of the stage in progress, one folder per stage (or sub-stage); never uploaded."""
COMPONENT_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
COMPONENT_DEPTH = 2
"""Component folders lie this deep at most (an offline run's dds/skills and dds/high_level)."""
NEVER_UPLOADED = (f"{TRAINING_DIR}/*", ".*", "*/.*")
"""Upload patterns (fnmatch on paths relative to the run) that no push sends: training state and hidden files."""
EVAL_KEYS = ("variants", "methods")
"""A JSON at the top of a run folder with one of these is an eval result (`mstt eval`, `mstt offline`)."""
HUB_ID = "USER/NAME"
"""How the card names the repo before the run is pushed."""
HUB_CACHE_PREFIX = "models--"


class HubRunError(ValueError):
    """A run folder downloaded from the Hub used for something that would write into it, or a push that failed."""


class RecordedExperiment(Protocol):
    """What a run folder records of the experiment that trains it: how the command line named it, its resolved
    config (a pydantic model), its source world (a TaskConfig), and the fingerprint of what shapes training."""

    @property
    def label(self) -> str: ...

    @property
    def config(self) -> Any: ...

    @property
    def source(self) -> Any: ...

    def fingerprint(self) -> str: ...


# --------------------------------------------------------------------------------------------------------------
# Hub snapshots are read-only


@dataclass(frozen=True)
class HubSnapshot:
    repo_id: str
    revision: str


def hub_snapshot(run: Path) -> HubSnapshot | None:
    """The Hub repo and revision when ``run`` lies in a Hub cache snapshot (models--USER--NAME/snapshots/REV/...)."""
    parts = Path(os.path.abspath(run)).parts
    for i in range(1, len(parts) - 1):
        if parts[i] == "snapshots" and parts[i - 1].startswith(HUB_CACHE_PREFIX):
            return HubSnapshot(parts[i - 1][len(HUB_CACHE_PREFIX) :].replace("--", "/"), parts[i + 1])
    return None


def check_not_hub_snapshot(run: Path) -> None:
    """Refuse to write into a run downloaded from the Hub."""
    snapshot = hub_snapshot(run)
    if snapshot is not None:
        raise HubRunError(
            f"{run} is the run {snapshot.repo_id} downloaded from the Hugging Face Hub (revision "
            f"{snapshot.revision[:12]}): a Hub run is used read-only and never trained into; train into a local "
            "--run folder instead"
        )


def is_repo_id(value: str) -> bool:
    """``USER/NAME`` as the Hub spells a model repo id (one slash, no path syntax)."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", value) is not None and ".." not in value


def resolve_run(value: str | Path, trains: bool = False) -> Path:
    """The run folder a `--run` value names: a local folder as given; else, where the value is a Hub repo id
    ``USER/NAME``, that run downloaded into the Hub cache (snapshot_download; offline with HF_HUB_OFFLINE=1 where it
    is cached). ``trains``: the command trains into the folder, so a Hub run (a snapshot, or an id whose run is in
    the Hub cache) is refused and any other value is a local folder, created when missing."""
    path, name = Path(value), str(value)
    if trains:
        check_not_hub_snapshot(path)
        if not path.exists() and is_repo_id(name) and isinstance(try_to_load_from_cache(name, RUN_FILE), str):
            raise HubRunError(
                f"--run {name}: names the Hub run {name} (in the Hub cache), which is used read-only and never "
                f"trained into; train into a local folder instead (e.g. --run runs/{name.split('/')[1]})"
            )
        return path
    if path.exists() or not is_repo_id(name):
        return path
    try:
        return Path(snapshot_download(name, repo_type="model", ignore_patterns=list(NEVER_UPLOADED)))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"--run {name}: no such run folder here, and no run {name} could be had from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'})"
        ) from None


# --------------------------------------------------------------------------------------------------------------
# What a run folder holds


def write_run_record(run: Path, experiment: RecordedExperiment) -> None:
    """run.json (the fingerprint, the command line's config and the source world), once per run folder."""
    record = {
        "fingerprint": experiment.fingerprint(),
        "config": experiment.label,
        "task": experiment.source.task,
        "variant": experiment.source.variant,
    }
    write_json_atomic(record, run / RUN_FILE)


def write_run_config(run: Path, experiment: RecordedExperiment) -> Path:
    """experiment.yaml: the experiment's config as it trains this run (`extends:` merged, overrides applied). Paths
    in it (source, targets, demos, data.root) are as the config file gives them, relative to that file."""
    header = (
        f"# The experiment config of this run, resolved: `extends:` merged and command-line overrides applied.\n"
        f"# Command line: {_portable_label(experiment.label)}\n"
        f"# Fingerprint: {experiment.fingerprint()}\n"
    )
    body = yaml.safe_dump(experiment.config.model_dump(mode="json"), sort_keys=False, width=120)
    return _write_text_atomic(header + body, run / CONFIG_FILE)


def component_folders(run: Path) -> list[Path]:
    """Every trained component of the run: a folder (COMPONENT_DEPTH deep at most) holding a checkpoint."""
    found = []
    for depth in range(1, COMPONENT_DEPTH + 1):
        for config in sorted(run.glob("/".join(["[!.]*"] * depth) + f"/{CONFIG_NAME}")):
            if (config.parent / WEIGHTS_NAME).is_file():
                found.append(config.parent)
    return found


def eval_files(run: Path) -> list[Path]:
    """The eval result JSONs written into the top of the run folder."""
    found = []
    for path in sorted(run.glob("*.json")):
        if path.name in (RUN_FILE, DATA_FILE):
            continue
        result = _read_json(path)
        if isinstance(result, dict) and any(isinstance(result.get(key), dict) for key in EVAL_KEYS):
            found.append(path)
    return found


def run_files(run: Path) -> list[str]:
    """The files that make up the run, relative to it: what a push uploads (never .training/ nor hidden files)."""
    top = [run / name for name in (RUN_FILE, CONFIG_FILE, DATA_FILE, CARD_NAME)]
    files = [p for p in top if p.is_file()] + eval_files(run)
    files += sorted((run / REPORTS_DIR).glob("*.json"))
    files += sorted(p for p in (run / LOGS_DIR).rglob("*") if p.is_file())
    for folder in component_folders(run):
        files += [folder / name for name in COMPONENT_FILES if (folder / name).is_file()]
    relative = [p.relative_to(run).as_posix() for p in files]
    return [name for name in relative if not any(part.startswith(".") for part in name.split("/"))]


# --------------------------------------------------------------------------------------------------------------
# The model card


def write_card(run: Path, repo_id: str | None = None) -> Path:
    """README.md of the run: task, data, training settings, each component, the eval tables of the eval JSONs in
    the folder, and how to load it (``repo_id``: the Hub repo it goes to; else USER/NAME)."""
    return _write_text_atomic(str(run_card(run, repo_id)), run / CARD_NAME)


def run_card(run: Path, repo_id: str | None = None) -> ModelCard:
    record = _read_json(run / RUN_FILE) or {}
    config = _read_yaml(run / CONFIG_FILE)
    data = _read_json(run / DATA_FILE)
    label = _portable_label(str(record.get("config", "CONFIG")))
    task = record.get("task") or (data or {}).get("dataset_id", "").split("/")[-1].split("-")[0] or "unknown"
    kind = (config or {}).get("experiment", "mstt")
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        license="apache-2.0",
        tags=[LIBRARY_NAME, "reinforcement-learning", "offline-reinforcement-learning", "robotics", str(task)],
    )
    title = "offline RL (DDS, IQL, BC)" if kind == "offline" else "MSTT skill tokens and masked critic"
    lines = [
        f"# mstt run: {title} on {task}",
        "",
        "Trained offline by mstt (Masked Skill Token Training) on the source dataset only. Each component folder "
        "also loads alone with its class's `from_pretrained` (see its own README.md).",
        "",
        "| | |",
        "|---|---|",
        f"| experiment | `{label}` (`experiment: {kind}`) |",
        f"| fingerprint | `{record.get('fingerprint', 'unknown')}` (`run.json`; eval and run refuse another config) |",
        f"| source world | {task}, variant `{record.get('variant', 'unknown')}` |",
    ]
    if data:
        lines.append(
            f"| data | `{data.get('dataset_id')}`: {data.get('transitions', 0):,} transitions in "
            f"{data.get('episodes', 0):,} episodes (`data.json`) |"
        )
    if config:
        lines.append(f"| seed | {config.get('seed', 0)} |")
        if config.get("targets"):
            lines.append(f"| target worlds | {', '.join(f'`{_portable_label(t)}`' for t in config['targets'])} |")
    lines += ["", "## Components and training", ""]
    lines += _component_table(run, config or {})
    lines.append("")
    lines.append(
        f"Every setting is in `{CONFIG_FILE}` (the config resolved as it trained this run)."
        if config
        else f"This run predates `{CONFIG_FILE}`: its settings are those of `{label}` with the fingerprint above."
    )
    for path in eval_files(run):
        lines += ["", f"## Evaluation (`{path.name}`)", ""]
        lines += _eval_table(_read_json(path) or {})
    hub_id = repo_id or HUB_ID
    lines += [
        "",
        "## How to load",
        "",
        "```bash",
        f"mstt eval {label} --run {hub_id}",
        "```",
        "",
        f"`--run {hub_id}` downloads the run into the Hugging Face Hub cache (`HF_HUB_OFFLINE=1` uses the cached copy) "
        "and uses it read-only; `mstt train` refuses it. The config must be the one the run was trained with (the "
        "fingerprint is checked). In Python:",
        "",
        "```python",
        "from pathlib import Path",
        "from huggingface_hub import snapshot_download",
        "from mstt.agent.experiments.train import load_models",
        "",
        f'models = load_models(Path(snapshot_download("{hub_id}")))',
        "```",
        "",
        "## Files",
        "",
        f"`{RUN_FILE}` (fingerprint), `{CONFIG_FILE}` (resolved config), `{DATA_FILE}`, one folder per component "
        f"(`{WEIGHTS_NAME}`, `{CONFIG_NAME}`), `{REPORTS_DIR}/` (each stage's numbers), `{LOGS_DIR}/` (training "
        f"curves) and eval JSONs. The resumable training state (`{TRAINING_DIR}/`) is never uploaded.",
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


COMPONENT_SETTINGS = ("steps", "skill_steps", "batch_size", "skill_batch_size", "lr")
"""The training settings a card shows per component (the rest are in experiment.yaml)."""


def _component_table(run: Path, config: Mapping[str, Any]) -> list[str]:
    rows = ["| component | kind | settings | trained on | seconds | size |", "|---|---|---|---|---|---|"]
    for folder in component_folders(run):
        name = folder.relative_to(run).as_posix()
        stage = name.split("/")[0]
        meta = _read_json(folder / CONFIG_NAME) or {}
        report = _read_json(run / REPORTS_DIR / f"{stage}.json") or {}
        section = config.get({"dds_skills": "executor_dds"}.get(stage, stage)) or meta.get("config") or {}
        settings = ", ".join(f"{key} {section[key]}" for key in COMPONENT_SETTINGS if key in section)
        seconds = f"{report['seconds']:.1f}" if isinstance(report.get("seconds"), (int, float)) else "-"
        size = (folder / WEIGHTS_NAME).stat().st_size
        shown = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
        rows.append(
            f"| `{name}` | {meta.get('kind', '?')} | {settings or '-'} | {report.get('device', '-')} | {seconds} | "
            f"{shown} |"
        )
    return rows


def _eval_table(result: Mapping[str, Any]) -> list[str]:
    """A transfer result (variants -> methods) or an offline one (methods) as a markdown table."""
    episodes = result.get("episodes")
    head = [f"{episodes} episodes per row." if episodes else "", ""]
    if isinstance(result.get("variants"), dict):
        rows = ["| variant | method | goal | 95% CI | return | failure |", "|---|---|---|---|---|---|"]
        for variant, methods in result["variants"].items():
            for method, m in methods.items():
                rows.append(
                    f"| {variant} | {method} | {_pct(m.get('goal_rate'))} | {_ci(m.get('goal_ci95'))} | "
                    f"{_num(m.get('return_mean'))} | {_pct(m.get('failure_rate'))} |"
                )
        return head + rows
    rows = ["| method | success | 95% CI | return | normalised score |", "|---|---|---|---|---|"]
    for method, m in result.get("methods", {}).items():
        rows.append(
            f"| {method} | {_pct(m.get('success_rate'))} | {_ci(m.get('success_ci95'))} | "
            f"{_num(m.get('return_mean'))} | {_num(m.get('normalised_score'))} |"
        )
    return head + rows


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


def _ci(value: Any) -> str:
    return f"[{value[0]:.2f}, {value[1]:.2f}]" if isinstance(value, (list, tuple)) and len(value) == 2 else "-"


# --------------------------------------------------------------------------------------------------------------
# mstt push


@dataclass(frozen=True)
class Pushed:
    repo_url: str
    files: list[str]
    """What was uploaded, relative to the run folder."""


def push_run(run: Path, repo_id: str, private: bool = False, token: str | None = None) -> Pushed:
    """Upload the run folder to the Hub model repo ``repo_id`` (created if missing; ``private`` for a new one):
    its card is written first, then upload_folder sends the run's own files in one commit; .training/ and anything
    that is not part of the run stay behind."""
    if not (run / RUN_FILE).is_file():
        raise FileNotFoundError(f"{run} is not a run folder ({RUN_FILE} missing): run `mstt train` into it first")
    if not component_folders(run):
        raise FileNotFoundError(f"{run} holds no trained component yet: finish `mstt train` before pushing it")
    if not is_repo_id(repo_id):
        raise HubRunError(f"--repo-id {repo_id!r}: a Hub model repo id is USER/NAME")
    if hub_snapshot(run) is None:  # a downloaded run keeps its card: it is read-only
        write_card(run, repo_id)
    files = run_files(run)
    fingerprint = (_read_json(run / RUN_FILE) or {}).get("fingerprint")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=True if private else None, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=url.repo_id, folder_path=run, repo_type="model",
            commit_message=f"mstt run (fingerprint {fingerprint})",
            allow_patterns=[glob.escape(name) for name in files], ignore_patterns=list(NEVER_UPLOADED),
        )  # fmt: skip
    except (HfHubHTTPError, LocalTokenNotFoundError) as err:
        raise HubRunError(
            f"push {run} to {repo_id}: {str(err).splitlines()[0]} (log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    return Pushed(str(url), files)


# --------------------------------------------------------------------------------------------------------------
# Small file helpers


def _write_text_atomic(text: str, path: Path) -> Path:
    """Write through a temp file and a rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, RESULT_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _portable_label(label: str) -> str:
    """A run's config label (file, then overrides) as a reader elsewhere can use it: a shipped config as
    configs/..., any other file by its name."""
    path, _, overrides = label.partition(" --")
    if "/configs/" in path:
        shown = "configs/" + path.split("/configs/", 1)[1]
    elif path.startswith("configs/"):
        shown = path
    else:
        shown = portable_path(path) if path else "CONFIG"
    return f"{shown} --{overrides}" if overrides else shown
