"""Every configuration model of msvqa, validated once and passed explicitly.

The same models type the Prefect flow parameters, so the Prefect UI renders them as forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


# Closed sets, so the Prefect form offers them as dropdowns. They repeat the names of
# models/backbones/registry.py and models/backbones/normalize.py (configs imports nothing from models);
# tests/test_config.py checks that they agree.
BackboneName = Literal["resnet101", "resnet50", "resnet18", "resnext101_3d", "resnet18_3d", "tiny2d", "tiny3d"]
NormalizationName = Literal["imagenet", "hara", "hcrn", "hcrn_appearance", "unit"]


class _Strict(BaseModel):
    # Unknown keys are almost always typos in YAML; refuse them instead of ignoring them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """Parameters of the synthetic dataset made when `dataset.root` holds no dataset."""

    videos: int = Field(240, ge=6, title="Videos", description="How many synthetic videos to generate.")
    seed: int = Field(
        0, title="Seed", description="Random seed of the generator: the same seed makes the same dataset.")
    width: int = Field(128, ge=32, title="Width (px)", description="Frame width of the generated videos.")
    height: int = Field(96, ge=32, title="Height (px)", description="Frame height of the generated videos.")
    frames: int = Field(48, ge=8, title="Frames per video", description="Length of each generated video in frames.")
    fps: int = Field(16, ge=1, title="Frames per second", description="Frame rate written into the generated videos.")
    glove_dim: int = Field(300, ge=4, title="GloVe dimension", description="Size of the generated word vectors.")
    # A name of tasks.ingest.synth_worlds.WORLDS (checked when the dataset is generated): what the videos look like.
    world: str = Field(
        "default", title="World", description="What the videos show: a name of tasks.ingest.synth_worlds.WORLDS.")


class Source(_Strict):
    """One input of the ingest stage: a URL or a local path, optionally with its sha256."""

    url: str = Field(title="URL or path", description="Where to fetch the input: http(s) URL or local path.")
    sha256: str | None = Field(
        None, title="SHA-256", description="Expected checksum of the download; empty: not checked.")
    extract: bool = Field(
        True, title="Extract archives", description="Unpack zip/tar archives into the dataset folder.")


class DatasetConfig(_Strict):
    name: str = Field(
        "msvd_qa", title="Dataset name",
        description="Names the store groups, the MLflow experiment and registered models.")
    root: Path = Field(
        Path("data/msvd-qa"), title="Dataset folder",
        description="Folder in MSVD-QA layout: video/, youtube_mapping.txt, *_qa.json.")
    sources: list[Source] = Field(
        default_factory=list, title="Sources",
        description="Inputs the ingest stage downloads or copies into the dataset folder.")
    # When set and `root` holds no dataset, the pipeline generates one there (the demo's behaviour).
    synthetic: SyntheticConfig | None = Field(
        None, title="Synthetic dataset", description="When set and the folder holds no dataset, generate one there.")
    # Limit the number of videos (smallest video ids first); None keeps all. For quick runs.
    max_videos: int | None = Field(
        None, ge=1, title="Max videos", description="Keep only this many videos (smallest ids first); empty keeps all.")


class StoreConfig(_Strict):
    # A local folder (the default) or an object-storage prefix: s3://BUCKET/PREFIX (gs://BUCKET/PREFIX).
    path: Path | str = Field(
        Path("data/store.zarr"), title="Store location",
        description="Local folder or s3://BUCKET/PREFIX (gs://...) of the feature store.")
    # S3-compatible service (MinIO, ...); unset: AWS_ENDPOINT_URL, else AWS itself. Credentials: AWS_* env.
    endpoint_url: str | None = Field(
        None, title="S3 endpoint",
        description="S3-compatible service URL (MinIO, ...); empty: AWS_ENDPOINT_URL or AWS.")
    region: str | None = Field(
        None, title="Region", description="Object-storage region; empty: the environment's default.")
    # Read this version (a snapshot id or a tag, `msvqa store log`); unset: the branch tip. Writers refuse it.
    snapshot: str | None = Field(
        None, title="Snapshot", description="Read this store version (snapshot id or tag); empty: the branch tip.")

    @field_validator("path", mode="before")
    @classmethod
    def _object_storage_or_folder(cls, value: object) -> object:
        text = str(value)
        for scheme in ("s3", "gs"):
            if text.startswith(f"{scheme}:/"):  # pathlib spells s3://b/p as s3:/b/p
                return f"{scheme}://" + text[len(scheme) + 1:].lstrip("/")
        return Path(text)


class ClipsConfig(_Strict):
    num_clips: int = Field(8, ge=1, title="Clips per video", description="Number of clips sampled from each video.")
    frames_per_clip: int = Field(16, ge=1, title="Frames per clip", description="Number of frames in each clip.")
    sampling: Literal["hcrn", "uniform"] = Field(
        "hcrn", title="Sampling", description="How clip frames are placed: HCRN's scheme or evenly spaced.")
    appearance_size: int = Field(
        224, ge=8, title="Appearance size (px)", description="Square frame size stored for the appearance backbone.")
    motion_size: int = Field(
        112, ge=8, title="Motion size (px)", description="Square frame size stored for the motion backbone.")
    # Resizing filter: "bicubic" as the reference preprocessing did; "area" is a sound antialiasing filter
    # but moves away from published features; it costs ffmpeg ~10% less CPU per video than bicubic.
    scaler: Literal["bicubic", "area", "bilinear"] = Field(
        "bicubic", title="Resize filter", description="ffmpeg scaling filter; bicubic matches the reference features.")
    timeout_s: float = Field(
        300.0, gt=0, title="Decode timeout (s)", description="ffmpeg time limit per video before it is quarantined.")
    videos_per_task: int = Field(16, ge=1, title="Videos per task", description="Videos decoded by one Prefect task.")
    # ffmpeg decoding and scaling threads per video. Workers already decode one video per core, so
    # more threads only compete; raise it when few workers decode large videos.
    ffmpeg_threads: int = Field(
        1, ge=1, title="ffmpeg threads", description="Decoding threads per video; workers already use the cores.")
    # zstd level of the stored clips (lossless at any level, so not part of the clip spec). Negative levels
    # are zstd's fast ones: on the five real MSVD clips, -5 stores a median 65% of raw for 58% of level 1's
    # CPU (level 1: 58% of raw), and compressing was a third of the workers' CPU. null stores the clips
    # uncompressed: the clip stage runs ~15% faster for ~1.5x the disk. Applies to new arrays only.
    compression_level: int | None = Field(
        -5, ge=-50, le=22, title="zstd level",
        description="Compression of stored clips (lossless); empty stores them raw.")


class BackboneConfig(_Strict):
    backbone: BackboneName = Field(title="Backbone", description="Feature extractor network.")
    weights: Path | None = Field(
        None, title="Weights file", description="Pretrained weights; empty: random initialisation (seeded).")
    batch_size: int = Field(32, ge=1, title="Batch size", description="Clips per forward pass during extraction.")
    normalization: NormalizationName = Field(
        "imagenet", title="Normalisation", description="Pixel normalisation the backbone's weights expect.")


class FeaturesConfig(_Strict):
    appearance: BackboneConfig = Field(
        BackboneConfig(backbone="resnet101", normalization="imagenet"), title="Appearance backbone",
        description="2D network extracting per-frame appearance features.")
    motion: BackboneConfig = Field(
        BackboneConfig(backbone="resnext101_3d", normalization="hara", batch_size=8), title="Motion backbone",
        description="3D network extracting per-clip motion features.")
    device: str = Field("auto", title="Device", description="'auto', 'cpu', 'cuda' or 'cuda:N' for feature extraction.")
    seed: int = Field(0, title="Seed", description="Seed of randomly initialised backbones (part of the feature spec).")
    # Torch CPU threads per extraction worker; None keeps torch's default (all cores). With several
    # worker processes on one machine, cores / workers avoids oversubscription.
    torch_threads: int | None = Field(
        None, ge=1, title="Torch threads", description="CPU threads per extraction worker; empty: torch's default.")
    # Videos per extraction task: a task loads the backbones once and records completion at its end.
    videos_per_task: int = Field(
        16, ge=1, title="Videos per task", description="Videos one extraction task processes (backbones load once).")


class TextConfig(_Strict):
    glove_path: Path | None = Field(
        None, title="GloVe file", description="Word vectors in GloVe text format; empty: random embeddings.")
    word_dim: int = Field(300, ge=1, title="Word dimension", description="Size of the word embeddings.")
    answer_top: int = Field(
        4000, ge=1, title="Answer classes",
        description="Keep the most frequent answers of the training split as classes.")
    glove_skip_malformed: bool = Field(
        False, title="Skip malformed GloVe lines", description="Skip unreadable GloVe lines instead of failing.")
    glove_cache: Path | None = Field(
        None, title="GloVe cache", description="Where the parsed GloVe cache is kept; empty: beside the file.")


class ModelConfig(_Strict):
    name: str = Field("dualvgr", title="Model", description="Registered QA model to train (see `msvqa models`).")
    module_dim: int = Field(768, ge=8, title="Hidden size", description="Width of the model's hidden layers.")
    unit_layers: int = Field(2, ge=1, title="Units", description="Number of stacked multi-modal units.")
    graph_layers: int = Field(1, ge=1, title="Graph layers", description="Graph attention layers per unit.")
    gat_heads: int = Field(
        4, ge=1, title="Attention heads",
        description="Heads of each graph attention layer; must divide the hidden size.")
    dropout: float = Field(0.15, ge=0.0, lt=1.0, title="Dropout", description="Dropout rate of the model's layers.")
    gat_dropout: float = Field(
        0.15, ge=0.0, lt=1.0, title="Graph dropout", description="Dropout rate inside graph attention.")
    leaky_slope: float = Field(
        0.01, title="LeakyReLU slope", description="Negative slope of the graph attention's LeakyReLU.")
    mfb_factor: int = Field(
        2, ge=1, title="MFB factor", description="Factor of the multi-modal factorised bilinear pooling.")
    freeze_embeddings: bool = Field(
        False, title="Freeze embeddings", description="Keep the word embeddings fixed during training.")
    # MSVQA (name: msvqa): the backbones are trainable encoders fed with raw clips; these are the training
    # stages in which they train (frozen in the others).
    train_backbones: list[Literal["autoencoder", "qa"]] = Field(
        default_factory=lambda: ["autoencoder", "qa"], title="Train backbones in",
        description="MSVQA only: stages in which the backbones train.")
    # A learned embedding per clip position (an msvqa extension: DualVGR's graph ignores clip order).
    clip_positions: bool = Field(
        False, title="Clip positions", description="Add a learned embedding per clip position (clip order).")
    # Standardise feature inputs per dimension with the training videos' statistics (kept in the model).
    standardize_features: bool = Field(
        True, title="Standardise features", description="Standardise inputs with the training videos' statistics.")
    # Loss weights of the paper's auxiliary losses (common consistency, HSIC dependence).
    alpha: float = Field(
        0.0, ge=0.0, title="Consistency loss weight", description="Weight of the paper's common-consistency loss.")
    beta: float = Field(
        0.0, ge=0.0, title="HSIC loss weight", description="Weight of the paper's HSIC dependence loss.")
    # Decoder (autoencoder stage) output size in pixels.
    decoder_size: int = Field(
        32, ge=8, title="Decoder size (px)", description="Output size of the autoencoder stage's decoder.")
    # MSVQA: keep only each backbone stage's input during the forward pass and recompute the rest in the
    # backward pass (torch.utils.checkpoint): much less memory for about a third more compute. Same gradients.
    checkpoint_activations: bool = Field(
        False, title="Checkpoint activations",
        description="MSVQA only: recompute backbone activations in the backward pass to save memory.")
    # Only for `msvqa models`: vocabulary sizes when no text store exists yet.
    question_vocab_size: int | None = Field(
        None, title="Question vocabulary", description="`msvqa models` only: size used before a text store exists.")
    answer_vocab_size: int | None = Field(
        None, title="Answer vocabulary", description="`msvqa models` only: size used before a text store exists.")


class StageConfig(_Strict):
    epochs: int = Field(10, ge=0, title="Epochs", description="Passes over the training split; 0 skips the stage.")
    batch_size: int = Field(64, ge=1, title="Batch size", description="Samples per optimisation step.")
    lr: float = Field(1e-4, gt=0, title="Learning rate", description="Initial learning rate of the optimiser.")
    weight_decay: float = Field(0.0, ge=0, title="Weight decay", description="L2 penalty of the optimiser.")
    grad_clip: float = Field(12.0, gt=0, title="Gradient clip", description="Maximum gradient norm per step.")
    patience: int | None = Field(
        None, ge=1, title="Early-stopping patience",
        description="Stop after this many epochs without improvement; empty: never.")
    lr_decay_epochs: int | None = Field(
        None, ge=1, title="LR decay every (epochs)",
        description="Multiply the learning rate every N epochs; empty: constant.")
    lr_decay: float = Field(
        0.5, gt=0, le=1, title="LR decay factor", description="Factor applied to the learning rate at each decay.")
    # Gradient accumulation: each step's batch_size samples pass forward in `accumulate` slices, so a batch
    # too large for the GPU keeps its meaning (and its results, up to float error; BatchNorm statistics and
    # batch-level losses such as HSIC see the slices).
    accumulate: int = Field(
        1, ge=1, title="Gradient accumulation",
        description="Forward passes per optimisation step; batch_size is split among them.")

    @model_validator(mode="after")
    def _batch_splits(self) -> "StageConfig":
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by accumulate {self.accumulate}")
        return self


class TrainConfig(_Strict):
    device: str = Field("auto", title="Device", description="'auto', 'cpu', 'cuda' or 'cuda:N' for training.")
    num_workers: int = Field(
        0, ge=0, title="Loader workers", description="Data-loader processes; 0 loads in the training process.")
    seed: int = Field(0, title="Seed", description="Seed of initialisation and data order.")
    autoencoder: StageConfig = Field(
        StageConfig(epochs=2, lr=1e-3), title="Autoencoder stage",
        description="Stage one: reconstruct clips to pre-train the encoders.")
    qa: StageConfig = Field(
        StageConfig(epochs=25, batch_size=32, lr=1e-4), title="QA stage",
        description="Stage two: train question answering.")
    # Stage two starts from stage one's checkpoint.
    init_from_autoencoder: bool = Field(
        True, title="Start from autoencoder", description="Stage two starts from stage one's checkpoint.")
    # Train the question-only model the same way and log it as its own run.
    baseline: bool = Field(
        True, title="Train baseline", description="Also train the question-only baseline as its own run.")
    # Comparison runs under the same parent, each on this config with only model.name changed. Names are checked
    # against the model registry when training starts (configs cannot import models); train.baseline=false drops
    # question_only, and the configured model itself is skipped.
    compare_with: list[str] = Field(
        ["question_only"], title="Compare with",
        description="Models also trained as sibling runs for comparison, e.g. [dualvgr, question_only].")
    checkpoint_dir: Path = Field(
        Path("data/checkpoints"), title="Checkpoint folder", description="Where resumable checkpoints are written.")
    # Keep the feature set in memory when it fits (half of MemAvailable, page cache included); else read rows
    # lazily from Zarr. The decision is logged.
    features_in_memory: bool = Field(
        True, title="Features in memory", description="Hold the feature set in RAM when it fits.")
    # Likewise the stored uint8 clips (models that read them, or the autoencoder stage deriving its targets)
    # and the stored reconstruction targets; lazy reads cost a Zarr read and decompression per item.
    clips_in_memory: bool = Field(
        True, title="Clips in memory",
        description="Hold the stored clips and reconstruction targets in RAM when they fit.")
    # bf16 autocast on CUDA
    amp: bool = Field(True, title="bf16 on CUDA", description="Use bf16 autocast on CUDA devices.")
    # bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX): faster (1.1x for DualVGR at the paper
    # size since its linear layers run on oneDNN in float32 too), but off by default because float32 is
    # exact to the reference. Runs record which precision they used (tag `precision`).
    amp_cpu: bool = Field(
        False, title="bf16 on CPU", description="Use bf16 autocast on CPUs with native bf16 (float32 is exact).")
    # torch.compile the model
    compile: bool = Field(False, title="torch.compile", description="Compile the model with torch.compile.")


class TrackingConfig(_Strict):
    uri: str = Field(
        "sqlite:///data/mlflow.db", title="Tracking URI",
        description="MLflow tracking store: a server URL or sqlite:///path.")
    # A folder, or s3://BUCKET/PREFIX so that machines sharing no disk read the same artifacts (MLflow
    # reaches S3-compatible services through its own MLFLOW_S3_ENDPOINT_URL and the AWS_* environment).
    artifact_location: Path | str = Field(
        Path("data/mlartifacts"), title="Artifact location",
        description="Where new experiments store run artifacts: a folder or s3://BUCKET/PREFIX.")
    # defaults to the dataset name
    experiment: str | None = Field(
        None, title="Experiment", description="MLflow experiment name; empty: the dataset name.")
    register_model: bool = Field(
        True, title="Register models", description="Register each trained model in the model registry.")
    system_metrics: bool = Field(
        True, title="System metrics", description="Log CPU, memory and GPU use during training.")

    @field_validator("artifact_location", mode="before")
    @classmethod
    def _object_storage_or_folder(cls, value: object) -> object:
        return StoreConfig._object_storage_or_folder(value)


class RunnerConfig(_Strict):
    kind: Literal["local", "dask"] = Field(
        "local", title="Runner", description="Run tasks in threads (local) or on a Dask cluster.")
    address: str | None = Field(
        None, title="Dask scheduler",
        description="Address of an existing Dask scheduler; empty: start a local cluster.")
    workers: int = Field(2, ge=1, title="Workers", description="Worker processes of a local Dask cluster.")
    threads_per_worker: int = Field(
        1, ge=1, title="Threads per worker", description="Threads of each local Dask worker.")
    # How long to wait for the temporary Prefect server (no PREFECT_API_URL) to answer; Prefect's own 20 s
    # runs out when every core is busy.
    prefect_startup_timeout_s: float = Field(
        120.0, gt=0, title="Prefect startup timeout (s)",
        description="Wait this long for the temporary Prefect server.")


class ReprocessConfig(_Strict):
    """Scheduled incremental reprocessing of new, changed or removed videos and questions."""

    # schedule of the `reprocess` deployment, e.g. "0 3 * * *"; None: no deployment
    cron: str | None = Field(
        None, title="Schedule (cron)",
        description="When the `reprocess` deployment runs, e.g. '0 3 * * *'; empty: no deployment.")
    # retrain when >= this many videos are new or changed
    retrain_min_new_videos: int | None = Field(
        None, ge=1, title="Retrain after (videos)",
        description="Retrain when at least this many videos are new or changed.")


class PipelineConfig(_Strict):
    """The whole pipeline's configuration: one object from ingest to evaluation."""

    seed: int = Field(0, title="Seed", description="Seed of the pipeline's random choices.")
    data_dir: Path = Field(
        Path("data"), title="Data folder",
        description="Where the pipeline keeps its working files (Prefect home, caches).")
    dataset: DatasetConfig = Field(
        DatasetConfig(), title="Dataset", description="Which videos and questions, and where they come from.")
    store: StoreConfig = Field(
        StoreConfig(), title="Store", description="The feature store holding clips, features and text.")
    clips: ClipsConfig = Field(
        ClipsConfig(), title="Clips", description="How clips are sampled and decoded from each video.")
    features: FeaturesConfig = Field(
        FeaturesConfig(), title="Features", description="Backbones that turn clips into features.")
    text: TextConfig = Field(TextConfig(), title="Text", description="Tokenisation, vocabularies and word vectors.")
    model: ModelConfig = Field(ModelConfig(), title="Model", description="The QA model and its sizes.")
    train: TrainConfig = Field(TrainConfig(), title="Training", description="Training stages, device and checkpoints.")
    tracking: TrackingConfig = Field(
        TrackingConfig(), title="Tracking", description="MLflow store, experiment and model registry.")
    runner: RunnerConfig = Field(
        RunnerConfig(), title="Runner", description="Where tasks run: threads or a Dask cluster.")
    reprocess: ReprocessConfig = Field(
        ReprocessConfig(), title="Reprocessing",
        description="Scheduled incremental reprocessing of the dataset folder.")

    @model_validator(mode="after")
    def _heads_divide_module_dim(self) -> "PipelineConfig":
        if self.model.module_dim % self.model.gat_heads:
            raise ValueError("model.module_dim must be divisible by model.gat_heads")
        return self
