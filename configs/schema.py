"""Every configuration model of msvqa, validated once and passed explicitly.

The same models type the Prefect flow parameters, so the Prefect UI renders them as forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    # Unknown keys are almost always typos in YAML; refuse them instead of ignoring them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """Parameters of the synthetic dataset made when `dataset.root` holds no dataset."""

    videos: int = Field(240, ge=6)
    seed: int = 0
    width: int = Field(128, ge=32)
    height: int = Field(96, ge=32)
    frames: int = Field(48, ge=8)
    fps: int = Field(16, ge=1)
    glove_dim: int = Field(300, ge=4)
    # A name of tasks.ingest.synth_worlds.WORLDS (checked when the dataset is generated): what the videos look like.
    world: str = "default"


class Source(_Strict):
    """One input of the ingest stage: a URL or a local path, optionally with its sha256."""

    url: str
    sha256: str | None = None
    extract: bool = True


class DatasetConfig(_Strict):
    name: str = "msvd_qa"
    root: Path = Path("data/msvd-qa")
    sources: list[Source] = Field(default_factory=list)
    # When set and `root` holds no dataset, the pipeline generates one there (the demo's behaviour).
    synthetic: SyntheticConfig | None = None
    # Limit the number of videos (smallest video ids first); None keeps all. For quick runs.
    max_videos: int | None = Field(None, ge=1)


class StoreConfig(_Strict):
    # A local folder (the default) or an object-storage prefix: s3://BUCKET/PREFIX (gs://BUCKET/PREFIX).
    path: Path | str = Path("data/store.zarr")
    # S3-compatible service (MinIO, ...); unset: AWS_ENDPOINT_URL, else AWS itself. Credentials: AWS_* env.
    endpoint_url: str | None = None
    region: str | None = None
    # Read this version (a snapshot id or a tag, `msvqa store log`); unset: the branch tip. Writers refuse it.
    snapshot: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _object_storage_or_folder(cls, value: object) -> object:
        text = str(value)
        for scheme in ("s3", "gs"):
            if text.startswith(f"{scheme}:/"):  # pathlib spells s3://b/p as s3:/b/p
                return f"{scheme}://" + text[len(scheme) + 1:].lstrip("/")
        return Path(text)


class ClipsConfig(_Strict):
    num_clips: int = Field(8, ge=1)
    frames_per_clip: int = Field(16, ge=1)
    sampling: Literal["hcrn", "uniform"] = "hcrn"
    appearance_size: int = Field(224, ge=8)
    motion_size: int = Field(112, ge=8)
    # Resizing filter: "bicubic" as the reference preprocessing did; "area" is a sound antialiasing filter
    # but moves away from published features; it costs ffmpeg ~10% less CPU per video than bicubic.
    scaler: Literal["bicubic", "area", "bilinear"] = "bicubic"
    timeout_s: float = Field(300.0, gt=0)
    videos_per_task: int = Field(16, ge=1)
    # ffmpeg decoding and scaling threads per video. Workers already decode one video per core, so
    # more threads only compete; raise it when few workers decode large videos.
    ffmpeg_threads: int = Field(1, ge=1)
    # zstd level of the stored clips (lossless at any level, so not part of the clip spec). Negative levels
    # are zstd's fast ones: on the five real MSVD clips, -5 stores a median 65% of raw for 58% of level 1's
    # CPU (level 1: 58% of raw), and compressing was a third of the workers' CPU. null stores the clips
    # uncompressed: the clip stage runs ~15% faster for ~1.5x the disk. Applies to new arrays only.
    compression_level: int | None = Field(-5, ge=-50, le=22)


class BackboneConfig(_Strict):
    backbone: str
    weights: Path | None = None
    batch_size: int = Field(32, ge=1)
    normalization: str = "imagenet"


class FeaturesConfig(_Strict):
    appearance: BackboneConfig = BackboneConfig(backbone="resnet101", normalization="imagenet")
    motion: BackboneConfig = BackboneConfig(backbone="resnext101_3d", normalization="hara", batch_size=8)
    device: str = "auto"
    seed: int = 0
    # Torch CPU threads per extraction worker; None keeps torch's default (all cores). With several
    # worker processes on one machine, cores / workers avoids oversubscription.
    torch_threads: int | None = Field(None, ge=1)
    # Videos per extraction task: a task loads the backbones once and records completion at its end.
    videos_per_task: int = Field(16, ge=1)


class TextConfig(_Strict):
    glove_path: Path | None = None
    word_dim: int = Field(300, ge=1)
    answer_top: int = Field(4000, ge=1)
    glove_skip_malformed: bool = False
    glove_cache: Path | None = None


class ModelConfig(_Strict):
    name: str = "dualvgr"
    module_dim: int = Field(768, ge=8)
    unit_layers: int = Field(2, ge=1)
    graph_layers: int = Field(1, ge=1)
    gat_heads: int = Field(4, ge=1)
    dropout: float = Field(0.15, ge=0.0, lt=1.0)
    gat_dropout: float = Field(0.15, ge=0.0, lt=1.0)
    leaky_slope: float = 0.01
    mfb_factor: int = Field(2, ge=1)
    freeze_embeddings: bool = False
    # MSVQA (name: msvqa): the backbones are trainable encoders fed with raw clips; these are the training
    # stages in which they train (frozen in the others).
    train_backbones: list[Literal["autoencoder", "qa"]] = Field(default_factory=lambda: ["autoencoder", "qa"])
    # A learned embedding per clip position (an msvqa extension: DualVGR's graph ignores clip order).
    clip_positions: bool = False
    # Standardise feature inputs per dimension with the training videos' statistics (kept in the model).
    standardize_features: bool = True
    # Loss weights of the paper's auxiliary losses (common consistency, HSIC dependence).
    alpha: float = Field(0.0, ge=0.0)
    beta: float = Field(0.0, ge=0.0)
    # Decoder (autoencoder stage) output size in pixels.
    decoder_size: int = Field(32, ge=8)
    # Only for `msvqa models`: vocabulary sizes when no text store exists yet.
    question_vocab_size: int | None = None
    answer_vocab_size: int | None = None


class StageConfig(_Strict):
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(12.0, gt=0)
    patience: int | None = Field(None, ge=1)
    lr_decay_epochs: int | None = Field(None, ge=1)
    lr_decay: float = Field(0.5, gt=0, le=1)


class TrainConfig(_Strict):
    device: str = "auto"
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    autoencoder: StageConfig = StageConfig(epochs=2, lr=1e-3)
    qa: StageConfig = StageConfig(epochs=25, batch_size=32, lr=1e-4)
    # Stage two starts from stage one's checkpoint.
    init_from_autoencoder: bool = True
    # Train the question-only model the same way and log it as its own run.
    baseline: bool = True
    checkpoint_dir: Path = Path("data/checkpoints")
    # Keep the feature set in memory when it fits (half the free RAM); else read rows lazily from Zarr.
    features_in_memory: bool = True
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX): faster (1.1x for DualVGR at the paper
    # size since its linear layers run on oneDNN in float32 too), but off by default because float32 is
    # exact to the reference. Runs record which precision they used (tag `precision`).
    amp_cpu: bool = False
    compile: bool = False  # torch.compile the model


class TrackingConfig(_Strict):
    uri: str = "sqlite:///data/mlflow.db"
    artifact_location: Path = Path("data/mlartifacts")
    experiment: str | None = None  # defaults to the dataset name
    register_model: bool = True
    system_metrics: bool = True


class RunnerConfig(_Strict):
    kind: Literal["local", "dask"] = "local"
    address: str | None = None
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    # How long to wait for the temporary Prefect server (no PREFECT_API_URL) to answer; Prefect's own 20 s
    # runs out when every core is busy.
    prefect_startup_timeout_s: float = Field(120.0, gt=0)


class ReprocessConfig(_Strict):
    """Scheduled incremental reprocessing of new, changed or removed videos and questions."""

    cron: str | None = None  # schedule of the `reprocess` deployment, e.g. "0 3 * * *"; None: no deployment
    retrain_min_new_videos: int | None = Field(None, ge=1)  # retrain when >= this many videos are new or changed


class PipelineConfig(_Strict):
    """The whole pipeline's configuration: one object from ingest to evaluation."""

    seed: int = 0
    data_dir: Path = Path("data")
    dataset: DatasetConfig = DatasetConfig()
    store: StoreConfig = StoreConfig()
    clips: ClipsConfig = ClipsConfig()
    features: FeaturesConfig = FeaturesConfig()
    text: TextConfig = TextConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    runner: RunnerConfig = RunnerConfig()
    reprocess: ReprocessConfig = ReprocessConfig()

    @model_validator(mode="after")
    def _heads_divide_module_dim(self) -> "PipelineConfig":
        if self.model.module_dim % self.model.gat_heads:
            raise ValueError("model.module_dim must be divisible by model.gat_heads")
        return self
