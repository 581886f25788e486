"""Every msvqa flow as a Prefect deployment: the list `msvqa serve` serves and `prefect.yaml` declares.

Two deployments per stage:
- `<stage>` takes `config: PipelineConfig`, so the Prefect UI renders the whole config as a form;
- `<stage>-from-file` (flow `run-from-file`) takes a YAML path plus `key.path=value` overrides, loaded with
  `configs.loader.load_config` when the run starts, so a schedule always picks up the file's current content.

Both apply the configured task runner (Dask or threads) to the clips and features flows, as the CLI does.
When the config sets `reprocess.cron`, a `reprocess` deployment (flow `run-reprocess`) runs the reprocess
flow from the YAML path on that schedule, so each run sees the file's current content.

Two more deployments ask trained models: `answer` (one question about one video file) and `search` (one
question over the stored videos). With a config they default to its champion model and tracking store;
the question, and for `answer` the video, come from whoever triggers the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, get_args

import yaml
from prefect import Flow, flow

from configs.errors import UserError
from configs.loader import load_config, validate_config
from configs.schema import PipelineConfig
from flows.answer import answer_flow
from flows.clips import run_clips
from flows.evaluate import evaluate_flow
from flows.features import run_features
from flows.ingest import ingest_flow
from flows.naming import flow_run_name
from flows.pipeline import pipeline_flow
from flows.reprocess import run_reprocess
from flows.search import search_flow
from flows.text import text_flow
from flows.train import train_flow
from flows.writer_slot import WRITER_STAGES, store_writer_slot
from models.registry import model_names

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

Stage = Literal["pipeline", "ingest", "clips", "features", "text", "train", "evaluate"]
STAGES: tuple[str, ...] = get_args(Stage)
WORK_POOL = "msvqa"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FILE_SUFFIX = "-from-file"
REPROCESS = "reprocess"


@flow(name="run-clips", flow_run_name=flow_run_name)
def clips_deployment_flow(config: PipelineConfig) -> dict:
    """Decode every video into the clip store, on the configured task runner (Dask or threads)."""
    # A deployment of `clips_flow` itself would run on its decorator's default runner: the runner
    # depends on `config.runner`, which is only known once the run's parameters are.
    with store_writer_slot(config):
        return run_clips(config)


@flow(name="run-features", flow_run_name=flow_run_name)
def features_deployment_flow(config: PipelineConfig) -> dict:
    """Extract appearance and motion features, on the configured task runner (Dask or threads)."""
    with store_writer_slot(config):
        return run_features(config)


# The flow each `<stage>` deployment serves; also what `run_from_file` dispatches to.
STAGE_FLOWS: dict[str, Flow] = {
    "pipeline": pipeline_flow,
    "ingest": ingest_flow,
    "clips": clips_deployment_flow,
    "features": features_deployment_flow,
    "text": text_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
}
# Deployments that ask a trained model; their runs must pass what `question_defaults` leaves out.
QUESTION_FLOWS: dict[str, Flow] = {"answer": answer_flow, "search": search_flow}
# run_from_file calls these (not the wrapper flows) so a file run is one parent with one stage child.
STAGE_RUNNERS: dict[str, Callable[[PipelineConfig], dict]] = {
    **STAGE_FLOWS, "clips": run_clips, "features": run_features,
}


@flow(name="run-from-file", flow_run_name=flow_run_name)
def run_from_file(config_path: str, stage: Stage = "pipeline", overrides: Optional[list[str]] = None) -> dict:
    """Load a YAML config with `key.path=value` overrides, then run one stage (default: the whole pipeline)."""
    config = load_config(Path(config_path), overrides or [])
    if stage not in WRITER_STAGES:
        return STAGE_RUNNERS[stage](config)
    with store_writer_slot(config):
        return STAGE_RUNNERS[stage](config)


# persist_result: what a scheduled run found and processed stays readable from the run after it ends.
@flow(name="run-reprocess", flow_run_name=flow_run_name, persist_result=True)
def reprocess_from_file(config_path: str, overrides: Optional[list[str]] = None) -> dict:
    """Load a YAML config with `key.path=value` overrides, then process only what changed in the dataset."""
    config = load_config(Path(config_path), overrides or [])
    with store_writer_slot(config):
        return run_reprocess(config)


def deployment_names(reprocess: bool = False) -> list[str]:
    """`flow name/deployment name` of every deployment, as `run_deployment` takes them.

    `reprocess`: whether the config schedules reprocessing, which adds the `reprocess` deployment.
    """
    typed = [f"{STAGE_FLOWS[stage].name}/{stage}" for stage in STAGES]
    names = typed + [f"{run_from_file.name}/{stage}{FILE_SUFFIX}" for stage in STAGES]
    names += [f"{flow_obj.name}/{name}" for name, flow_obj in QUESTION_FLOWS.items()]
    return names + ([f"{reprocess_from_file.name}/{REPROCESS}"] if reprocess else [])


def question_defaults(config: PipelineConfig | None, config_json: dict | None) -> dict[str, dict[str, Any]]:
    """Default parameters of the `answer` and `search` deployments: champion models of the config's models.

    `config_json` is the config as the deployments store it (for `search`, which reads the store it names).
    """
    if config is None:
        return {name: {} for name in QUESTION_FLOWS}

    def champion(model_name: str) -> dict[str, Any]:
        return {"model_uri": f"models:/{config.dataset.name}-{model_name}@champion",
                "tracking_uri": config.tracking.uri}

    # `search` ranks the stored features, which an end-to-end model (msvqa) does not read: it defaults to the
    # config's first feature model, the configured one or else a comparison model (the demo's dualvgr).
    feature_models = set(model_names(reads={"features"}))
    searcher = next((name for name in (config.model.name, *config.train.compare_with) if name in feature_models),
                    config.model.name)
    return {"answer": champion(config.model.name), "search": {**champion(searcher), "config": config_json}}


def reprocess_deployment(config: PipelineConfig, config_path: str | Path,
                         overrides: list[str] | None = None) -> "RunnerDeployment | None":
    """The scheduled `reprocess` deployment, or None when the config sets no `reprocess.cron`."""
    from prefect.types.entrypoint import EntrypointType

    cron = config.reprocess.cron
    if cron is None:
        return None
    return reprocess_from_file.to_deployment(
        name=REPROCESS, parameters={"config_path": str(Path(config_path).resolve()), "overrides": list(overrides or [])},
        cron=cron, tags=["msvqa", REPROCESS, "from-file"], entrypoint_type=EntrypointType.MODULE_PATH,
        description="Rescan dataset.root and process only new or changed videos and annotations.")


def build_deployments(config_path: str | Path | None, overrides: list[str] | None = None, *,
                      schedule_cron: str | None = None) -> list["RunnerDeployment"]:
    """Deployments for `prefect.serve`, defaulting to `config_path` (validated now) when given.

    Without a config the `config` / `config_path` parameters have no default and each run must pass one.
    `schedule_cron` schedules `pipeline-from-file`, which re-reads the YAML at every run.
    """
    from prefect.types.entrypoint import EntrypointType

    overrides = list(overrides or [])
    if schedule_cron and config_path is None:
        raise UserError("a schedule needs a config file: its runs have nobody to pass one")
    typed_params: dict[str, Any] = {}
    file_params: dict[str, Any] = {"overrides": overrides}
    config = None
    if config_path is not None:
        config = load_config(Path(config_path), overrides)
        typed_params["config"] = config.model_dump(mode="json")
        # Absolute, because served runs must not depend on the working directory of whoever triggers them.
        file_params["config_path"] = str(Path(config_path).resolve())
    # Module-path entrypoints: the package is installed, so runs import `flows.*` the normal way.
    module = EntrypointType.MODULE_PATH
    deployments = [
        STAGE_FLOWS[stage].to_deployment(name=stage, parameters=typed_params, tags=["msvqa", stage],
                                         entrypoint_type=module)
        for stage in STAGES
    ]
    deployments += [
        run_from_file.to_deployment(name=f"{stage}{FILE_SUFFIX}", parameters={**file_params, "stage": stage},
                                    cron=schedule_cron if stage == "pipeline" else None,
                                    tags=["msvqa", stage, "from-file"], entrypoint_type=module,
                                    description=f"Run the {stage} stage from a YAML config path plus overrides.")
        for stage in STAGES
    ]
    defaults = question_defaults(config, typed_params.get("config"))
    deployments += [
        flow_obj.to_deployment(name=name, parameters=defaults[name], tags=["msvqa", "ask", name],
                               entrypoint_type=module)
        for name, flow_obj in QUESTION_FLOWS.items()
    ]
    reprocess = reprocess_deployment(config, config_path, overrides) if config is not None else None
    return deployments + ([reprocess] if reprocess is not None else [])


def entrypoint(flow_obj: Flow) -> str:
    """The module-path entrypoint of a flow defined in this package, e.g. `flows.pipeline.pipeline_flow`."""
    return f"{flow_obj.fn.__module__}.{flow_obj.fn.__name__}"


class _NamedAnchorDumper(yaml.SafeDumper):
    """Names the one shared object (the default config) `default_config` instead of PyYAML's `id001`."""

    def generate_anchor(self, node: yaml.Node) -> str:
        return "default_config"


_PREFECT_YAML_HEADER = """\
# Generated by `python -m flows.serve --print-prefect-yaml` from flows/deployments.py: edit that, then
# regenerate (tests/test_serve.py fails while this file and the generator disagree).
#
# The same deployments as `msvqa serve`, for a process work pool:
#   prefect work-pool create msvqa --type process
#   prefect deploy --all
#   MSVQA_ROOT=$PWD prefect worker start --pool msvqa     # from the project root, in the project's venv
# Flow runs start in MSVQA_ROOT, so the relative paths of configs/*.yaml resolve as they do for the CLI.
# To schedule the pipeline, add to `pipeline-from-file`:   schedules: [{cron: "0 3 * * *"}]
# A config with `reprocess.cron` adds a scheduled `reprocess` deployment (rescans the dataset, processes changes).
"""


def prefect_yaml(config_path: str = "configs/demo.yaml", root: Path = PROJECT_ROOT) -> str:
    """The text of prefect.yaml: the deployments of `deployment_names()`, defaults from `root/config_path`."""
    raw = yaml.safe_load((root / config_path).read_text(encoding="utf-8")) or {}
    # Validated but not resolved: relative paths stay relative to MSVQA_ROOT, where the worker runs flows.
    validated = validate_config(raw, config_path)
    config = validated.model_dump(mode="json")
    # Only `config` is shared between entries, so it is the one object that becomes a YAML anchor.
    typed = [{"name": stage, "entrypoint": entrypoint(STAGE_FLOWS[stage]), "tags": ["msvqa", stage],
              "parameters": {"config": config}, "work_pool": {"name": WORK_POOL}} for stage in STAGES]
    files = [{"name": f"{stage}{FILE_SUFFIX}", "entrypoint": entrypoint(run_from_file),
              "tags": ["msvqa", stage, "from-file"], "work_pool": {"name": WORK_POOL},
              "parameters": {"config_path": config_path, "stage": stage, "overrides": []}} for stage in STAGES]
    defaults = question_defaults(validated, config)
    asking = [{"name": name, "entrypoint": entrypoint(flow_obj), "tags": ["msvqa", "ask", name],
               "parameters": defaults[name], "work_pool": {"name": WORK_POOL}}
              for name, flow_obj in QUESTION_FLOWS.items()]
    scheduled = []
    cron = validated.reprocess.cron
    if cron is not None:
        scheduled.append({"name": REPROCESS, "entrypoint": entrypoint(reprocess_from_file),
                          "tags": ["msvqa", REPROCESS, "from-file"], "work_pool": {"name": WORK_POOL},
                          "parameters": {"config_path": config_path, "overrides": []},
                          "schedules": [{"cron": cron}]})
    document = {
        "name": "msvqa",
        "build": None,
        "push": None,
        # Resolved by the worker when a run starts (an unset MSVQA_ROOT fails the run at this step).
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MSVQA_ROOT }}"}}],
        "deployments": typed + files + asking + scheduled,
    }
    body = yaml.dump(document, Dumper=_NamedAnchorDumper, sort_keys=False, default_flow_style=False, width=110)
    return _PREFECT_YAML_HEADER + body
