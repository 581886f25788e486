"""Probing and frame-exact decoding, checked against PyAV on generated and on real videos."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import ffmpeg
import numpy as np
import pytest

import tasks.video.clips as clips_module
from configs.schema import ClipsConfig
from tasks.video.avi_header import avi_frame_count
from tasks.video.clips import ClipJob, decode_one
from tasks.video.ffmpeg_bin import ffmpeg_binary
from tasks.video.sampling import sample_frame_indices
from tasks.video.decode import _decode_command, decode_clips, rgb_at_size
from tasks.video.ffmpeg_run import FramesMissing, VideoError
from tasks.video.probe import VideoInfo, _parse_video_stream, probe_video

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TIMEOUT_S = 60.0
NUM_FRAMES = 40
WIDTH, HEIGHT = 64, 48
GRID_ROWS, GRID_COLS = 3, 4  # 16x16-pixel blocks, one per macroblock, so compression keeps them flat
NUM_BITS = 6  # enough for frame numbers up to 63


def barcode_frame(number: int) -> np.ndarray:
    """A [48, 64, 3] frame whose first six blocks spell `number` in binary (white = 1), the rest grey noise.

    The noise makes frames costly to encode, so that most of a file's bytes are frames, not header.
    """
    noise = np.random.default_rng(number).integers(0, 256, size=(HEIGHT, WIDTH, 1), dtype=np.uint8)
    frame = np.repeat(noise, 3, axis=2)  # [48, 64, 3]
    block_h, block_w = HEIGHT // GRID_ROWS, WIDTH // GRID_COLS
    for bit in range(NUM_BITS):
        row, col = divmod(bit, GRID_COLS)
        level = 235 if (number >> bit) & 1 else 16
        frame[row * block_h : (row + 1) * block_h, col * block_w : (col + 1) * block_w] = level
    return frame


def read_barcode(frame: np.ndarray) -> int:
    """The frame number spelled by `barcode_frame`, read from a copy of it resized to any size."""
    height, width = frame.shape[:2]
    number = 0
    for bit in range(NUM_BITS):
        row, col = divmod(bit, GRID_COLS)
        y = int((row + 0.5) * height / GRID_ROWS)
        x = int((col + 0.5) * width / GRID_COLS)
        if frame[y, x].mean() > 128:
            number |= 1 << bit
    return number


def encode_video(path: Path, codec_args: list[str], rate: int = 25, filters: str | None = None) -> Path:
    """Write NUM_FRAMES barcode frames to `path` through the ffmpeg binary."""
    frames = np.stack([barcode_frame(i) for i in range(NUM_FRAMES)])  # [40, 48, 64, 3]
    args = [
        ffmpeg_binary(), "-nostdin", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(rate), "-i", "pipe:",
        *(["-vf", filters] if filters else []),
        *codec_args, str(path),
    ]  # fmt: skip
    subprocess.run(args, input=frames.tobytes(), check=True, timeout=60)
    return path


def pyav_frames(path: Path, wanted: set[int]) -> tuple[int, dict[int, av.VideoFrame]]:
    """PyAV's count of decoded frames, and the decoded frames whose numbers are in `wanted`."""
    kept: dict[int, av.VideoFrame] = {}
    count = 0
    with av.open(str(path)) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            if count - 1 in wanted:
                kept[count - 1] = frame
    return count, kept


def ffmpeg_scaled(frames: list[av.VideoFrame], size: int, scaler: str = "bicubic") -> np.ndarray:
    """Resize PyAV-decoded frames [n] to [n, size, size, 3] RGB with ffmpeg's own scaler.

    The frames' YUV planes go to ffmpeg untouched, so any difference from decode_clips can only come
    from decode_clips having picked other frames (PyAV's reformat uses another libswscale build and
    differs by a few levels, so it cannot serve for an exact comparison).
    """
    first = frames[0]
    assert first.format.name == "yuv420p"
    raw = b"".join(frame.to_ndarray(format="yuv420p").tobytes() for frame in frames)
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p", s=f"{first.width}x{first.height}")
    output = rgb_at_size(source, size, scaler).output("pipe:", format="rawvideo")  # type: ignore[arg-type]
    args = [ffmpeg_binary(), "-nostdin", "-v", "error", *output.compile(cmd=ffmpeg_binary())[1:]]
    result = subprocess.run(args, input=raw, capture_output=True, check=True, timeout=60)
    return np.frombuffer(result.stdout, dtype=np.uint8).reshape(len(frames), size, size, 3)


def assert_matches_pyav(
    path: Path, indices: np.ndarray, appearance_size: int, motion_size: int, scaler: str = "bicubic"
) -> int:
    """Check decode_clips against PyAV's frames at `indices`; returns PyAV's count of decoded frames."""
    clips = decode_clips(path, indices, appearance_size, motion_size, TIMEOUT_S, scaler=scaler)  # type: ignore[arg-type]
    wanted = np.unique(indices)
    count, decoded = pyav_frames(path, set(wanted.tolist()))
    frames = [decoded[int(k)] for k in wanted]
    position = np.searchsorted(wanted, indices)  # [c, f]
    np.testing.assert_array_equal(clips.appearance, ffmpeg_scaled(frames, appearance_size, scaler)[position])
    np.testing.assert_array_equal(clips.motion, ffmpeg_scaled(frames, motion_size, scaler)[position])
    assert clips.frames_decoded == count
    return count


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-bf", "3"]
    return {
        "mpeg4.avi": encode_video(folder / "mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "2"]),
        # B-frames make the decoder reorder: frame numbers must follow display order.
        "h264.mkv": encode_video(folder / "h264.mkv", h264, rate=30),
        # Timestamps n^2 / 25 s: gaps that grow frame by frame, which a constant-rate output would fill.
        "vfr.mkv": encode_video(
            folder / "vfr.mkv", [*h264, "-fps_mode", "passthrough"], filters="setpts=N*N"
        ),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mpeg4.avi", VideoInfo(width=64, height=48, fps=25.0, num_frames=40, codec="mpeg4")),
        ("h264.mkv", VideoInfo(width=64, height=48, fps=30.0, num_frames=40, codec="h264")),
    ],
)
def test_probe_reports_the_stream_and_exact_frame_count(
    videos: dict[str, Path], name: str, expected: VideoInfo
) -> None:
    assert probe_video(videos[name], TIMEOUT_S) == expected


@pytest.mark.parametrize("name", ["mpeg4.avi", "h264.mkv", "vfr.mkv"])
def test_probe_counts_what_pyav_decodes(videos: dict[str, Path], name: str) -> None:
    pyav_count, _ = pyav_frames(videos[name], set())
    assert pyav_count == NUM_FRAMES
    assert probe_video(videos[name], TIMEOUT_S).num_frames == pyav_count


@pytest.mark.parametrize("name", ["mpeg4.avi", "h264.mkv", "vfr.mkv"])
@pytest.mark.parametrize("mode", ["hcrn", "uniform"])
@pytest.mark.parametrize(("appearance_size", "motion_size"), [(48, 24), (16, 32)])
def test_decoded_frames_carry_the_requested_frame_numbers(
    videos: dict[str, Path], name: str, mode: str, appearance_size: int, motion_size: int
) -> None:
    # 8 x 16 from 40 frames: hcrn pads clips with edge frames, uniform repeats frames.
    indices = sample_frame_indices(NUM_FRAMES, 8, 16, mode)  # type: ignore[arg-type]
    clips = decode_clips(videos[name], indices, appearance_size, motion_size, TIMEOUT_S)
    appearance, motion = clips.appearance, clips.motion
    assert clips.frames_decoded == NUM_FRAMES
    assert appearance.shape == (8, 16, appearance_size, appearance_size, 3)
    assert motion.shape == (8, 16, motion_size, motion_size, 3)
    assert appearance.dtype == motion.dtype == np.uint8
    read_appearance = np.array([[read_barcode(frame) for frame in clip] for clip in appearance])
    read_motion = np.array([[read_barcode(frame) for frame in clip] for clip in motion])
    np.testing.assert_array_equal(read_appearance, indices)
    np.testing.assert_array_equal(read_motion, indices)


@pytest.mark.parametrize("name", ["mpeg4.avi", "h264.mkv", "vfr.mkv"])
@pytest.mark.parametrize("scaler", ["bicubic", "area"])
def test_decoded_frames_equal_pyav_frames_resized_by_ffmpeg(videos: dict[str, Path], name: str, scaler: str) -> None:
    indices = np.array([[39, 0, 7, 7], [20, 21, 22, 38]])
    assert_matches_pyav(videos[name], indices, appearance_size=40, motion_size=20, scaler=scaler)


def test_the_scalers_differ(videos: dict[str, Path]) -> None:
    # Guards the test above: were the scaler ignored, both would still match PyAV.
    indices = np.array([[5, 6]])
    bicubic = decode_clips(videos["h264.mkv"], indices, 40, 20, TIMEOUT_S, scaler="bicubic")
    area = decode_clips(videos["h264.mkv"], indices, 40, 20, TIMEOUT_S, scaler="area")
    assert not np.array_equal(bicubic.appearance, area.appearance)


def test_a_single_frame_can_be_decoded(videos: dict[str, Path]) -> None:
    clips = decode_clips(videos["h264.mkv"], np.array([[17]]), 32, 16, TIMEOUT_S)
    assert read_barcode(clips.appearance[0, 0]) == 17
    assert read_barcode(clips.motion[0, 0]) == 17
    assert clips.frames_decoded == NUM_FRAMES  # the count covers the whole video, not just up to frame 17


def test_frames_past_the_end_are_reported_not_invented(videos: dict[str, Path]) -> None:
    with pytest.raises(FramesMissing, match="mpeg4.avi") as caught:
        decode_clips(videos["mpeg4.avi"], np.array([[38, 39, 40, 41]]), 32, 16, TIMEOUT_S)
    assert caught.value.reason == "truncated"
    assert caught.value.frames_decoded == NUM_FRAMES  # what a caller needs to plan again


# 2% of the avi is inside its header; 30% is inside its frames.
@pytest.mark.parametrize(("name", "kept"), [("mpeg4.avi", 0.02), ("mpeg4.avi", 0.3), ("h264.mkv", 0.3)])
def test_truncated_file_raises_instead_of_yielding_blank_frames(
    videos: dict[str, Path], name: str, kept: float, tmp_path: Path
) -> None:
    data = videos[name].read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(VideoError) as probed:
        probe_video(cut, TIMEOUT_S)
    assert probed.value.reason == "truncated"
    assert str(cut) in str(probed.value)
    # A caller that planned from the intact file's count must not get frames either.
    with pytest.raises(VideoError) as decoded:
        decode_clips(cut, sample_frame_indices(NUM_FRAMES, 8, 16, "hcrn"), 32, 16, TIMEOUT_S)
    assert decoded.value.reason == "truncated"


def test_truncated_mp4_without_its_index_is_truncated(tmp_path: Path) -> None:
    # mp4 writes its index (moov) at the end, so a cut file cannot even be opened.
    whole = encode_video(tmp_path / "whole.mp4", ["-c:v", "libx264", "-preset", "ultrafast"])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.3)])
    with pytest.raises(VideoError) as caught:
        probe_video(cut, TIMEOUT_S)
    assert caught.value.reason == "truncated"


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_text(path: Path) -> Path:
    path.write_text("These are not the frames you are looking for.\n" * 20)
    return path


def make_audio_only(path: Path) -> Path:
    args = [ffmpeg_binary(), "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", str(path)]
    subprocess.run(args, check=True, timeout=60)
    return path


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.avi", make_empty, "empty file"),
        ("notes.avi", make_text, "not a video"),
        ("tone.wav", make_audio_only, "no video stream"),
    ],
)
def test_unusable_files_raise_with_reason_and_name(
    tmp_path: Path, name: str, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path / name)
    with pytest.raises(VideoError) as probed:
        probe_video(path, TIMEOUT_S)
    assert (probed.value.reason, probed.value.path) == (reason, path)
    assert str(path) in str(probed.value)
    with pytest.raises(VideoError) as decoded:
        decode_clips(path, np.array([[0]]), 32, 16, TIMEOUT_S)
    assert decoded.value.reason == reason


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as caught:
        probe_video(tmp_path / "absent.avi", TIMEOUT_S)
    assert caught.value.reason == "not found"


def test_ffmpeg_is_stopped_at_the_timeout(videos: dict[str, Path]) -> None:
    # No ffmpeg run starts, let alone decodes, within 0.1 ms.
    with pytest.raises(VideoError) as probed:
        probe_video(videos["h264.mkv"], timeout_s=1e-4)
    assert probed.value.reason == "timeout"
    with pytest.raises(VideoError) as decoded:
        decode_clips(videos["h264.mkv"], np.array([[0, 1]]), 32, 16, timeout_s=1e-4)
    assert decoded.value.reason == "timeout"


def test_the_filter_graph_runs_on_the_requested_number_of_threads(videos: dict[str, Path]) -> None:
    # The graph goes to ffmpeg as -filter_complex, which -filter_threads does not bound: with that option
    # ffmpeg started its default pool of filter threads and the clip stage spent a fifth more CPU.
    command = _decode_command(videos["h264.mkv"], np.arange(4), 32, 16, 3, "bicubic")
    assert "-filter_complex" in command
    assert command[command.index("-filter_complex_threads") + 1] == "3"
    assert "-filter_threads" not in command
    assert command[command.index("-threads") + 1] == "3"  # the decoder's


@pytest.mark.parametrize(
    "indices",
    [np.array([0, 1, 2]), np.array([[0, -1]]), np.array([[0.0, 1.0]]), np.zeros((0, 4), dtype=np.int64)],
)
def test_malformed_indices_are_rejected(videos: dict[str, Path], indices: np.ndarray) -> None:
    with pytest.raises(ValueError):
        decode_clips(videos["h264.mkv"], indices, 32, 16, TIMEOUT_S)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':\n"
            "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp\n"
            "  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661),"
            " yuv420p(tv, bt709, progressive),"
            " 1920x1080 [SAR 1:1 DAR 16:9], 4000 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)\n"
            "Stream mapping:\n  Stream #0:1 -> #0:0 (h264 (native) -> wrapped_avframe (native))\n",
            ("h264", 1920, 1080, 29.97),
        ),
        (
            "Input #0, mp3, from 'song.mp3':\n"
            "  Stream #0:0: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 500x500, 90k tbr,"
            " 90k tbn (attached pic)\n"
            "  Stream #0:1: Video: vp9 (Profile 0), yuv420p(tv), 640x360, SAR 1:1 DAR 16:9, 1k tbr, 1k tbn\n",
            ("vp9", 640, 360, 1000.0),
        ),
        ("Input #0, wav, from 'a.wav':\n  Stream #0:0: Audio: pcm_s16le, 44100 Hz, mono, s16\n", None),
    ],
)
def test_stream_report_parsing(report: str, expected: tuple[str, int, int, float] | None) -> None:
    assert _parse_video_stream(report) == expected


REAL_VIDEOS = sorted((SHARED_DATA / "msvd-mini" / "video").glob("*.avi")) + [
    SHARED_DATA / "real-clips" / name for name in ("video7010.mp4", "video7011.mp4")
]


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real videos are not here: {SHARED_DATA} is absent")
@pytest.mark.parametrize("path", REAL_VIDEOS, ids=lambda path: path.name)
def test_real_footage_is_probed_and_decoded_frame_exactly(path: Path) -> None:
    info = probe_video(path, TIMEOUT_S)
    assert info.codec == "h264"
    pyav_count = assert_matches_pyav(path, sample_frame_indices(info.num_frames, 8, 16, "hcrn"), 224, 112)
    assert info.num_frames == pyav_count


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real videos are not here: {SHARED_DATA} is absent")
def test_real_avi_cut_to_30_percent_is_truncated(tmp_path: Path) -> None:
    source = SHARED_DATA / "msvd-mini" / "video" / "WTf5EgVY5uU_124_128.avi"
    data = source.read_bytes()
    cut = tmp_path / source.name
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(VideoError) as probed:
        probe_video(cut, TIMEOUT_S)
    assert probed.value.reason == "truncated"
    # Planned from the intact file's 120 frames, the clips reach past what is left.
    with pytest.raises(VideoError) as decoded:
        decode_clips(cut, sample_frame_indices(120, 8, 16, "hcrn"), 224, 112, TIMEOUT_S)
    assert decoded.value.reason == "truncated"


@pytest.mark.parametrize("claimed", [NUM_FRAMES + 7, NUM_FRAMES - 9, 3])
def test_a_packet_count_the_decoder_disagrees_with_is_planned_again(
    videos: dict[str, Path], claimed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Containers can hold packets that decode to no frame; the clips must follow the decoder's count.
    path = videos["h264.mkv"]
    config = ClipsConfig(num_clips=3, frames_per_clip=4, appearance_size=16, motion_size=8)
    job = ClipJob(row=0, video_id=1, name="h264", path=str(path))
    exact, exact_padded = decode_one(job, config)
    real_probe = clips_module.probe_video

    def miscounting_probe(video: Path, timeout_s: float) -> VideoInfo:
        return dataclasses.replace(real_probe(video, timeout_s), num_frames=claimed)

    monkeypatch.setattr(clips_module, "probe_video", miscounting_probe)
    replanned, padded = decode_one(job, config)
    assert replanned.frames_decoded == exact.frames_decoded == NUM_FRAMES
    np.testing.assert_array_equal(replanned.appearance, exact.appearance)
    np.testing.assert_array_equal(replanned.motion, exact.motion)
    assert padded == exact_padded
    read = [[read_barcode(frame) for frame in clip] for clip in replanned.appearance]
    assert read == sample_frame_indices(NUM_FRAMES, 3, 4, "hcrn").tolist()


def test_avi_header_declares_the_decoded_frame_count(videos: dict[str, Path], tmp_path: Path) -> None:
    assert avi_frame_count(videos["mpeg4.avi"]) == NUM_FRAMES
    assert avi_frame_count(videos["h264.mkv"]) is None  # not an AVI: the caller counts packets instead
    assert avi_frame_count(make_text(tmp_path / "notes.avi")) is None
    assert avi_frame_count(make_empty(tmp_path / "empty.avi")) is None
    cut = tmp_path / "cut.avi"
    cut.write_bytes(videos["mpeg4.avi"].read_bytes()[:100])  # inside the header list
    assert avi_frame_count(cut) is None


def with_declared_length(source: Path, target: Path, length: int) -> Path:
    """A copy of the AVI `source` whose video stream header declares `length` frames."""
    data = bytearray(source.read_bytes())
    strh = data.index(b"strh")  # chunk id, size (4 bytes), then the header: fccType "vids", ... dwLength
    assert data[strh + 8 : strh + 12] == b"vids"
    data[strh + 8 + 32 : strh + 8 + 36] = length.to_bytes(4, "little")
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("declared", [NUM_FRAMES + 7, NUM_FRAMES - 9])
def test_a_wrong_avi_header_is_corrected_by_the_decoder(videos: dict[str, Path], declared: int, tmp_path: Path) -> None:
    config = ClipsConfig(num_clips=3, frames_per_clip=4, appearance_size=16, motion_size=8)
    exact, _ = decode_one(ClipJob(0, 1, "mpeg4", str(videos["mpeg4.avi"])), config)
    lying = with_declared_length(videos["mpeg4.avi"], tmp_path / "lying.avi", declared)
    assert avi_frame_count(lying) == declared
    decoded, _ = decode_one(ClipJob(0, 1, "lying", str(lying)), config)
    assert decoded.frames_decoded == NUM_FRAMES
    np.testing.assert_array_equal(decoded.appearance, exact.appearance)
    np.testing.assert_array_equal(decoded.motion, exact.motion)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real videos are not here: {SHARED_DATA} is absent")
def test_real_avi_headers_declare_what_pyav_decodes() -> None:
    for path in sorted((SHARED_DATA / "msvd-mini" / "video").glob("*.avi")):
        assert avi_frame_count(path) == pyav_frames(path, set())[0], path.name


@pytest.mark.parametrize("size", [20, 40, 96])
def test_bicubic_resize_matches_pil_bicubic_within_a_level(tmp_path: Path, size: int) -> None:
    # An independent resize: PIL's bicubic (what the reference preprocessing used) on PyAV's RGB frames.
    # Smooth frames, since on noise any two bicubic kernels disagree. Luma agrees within 1.5 levels on
    # average (seen: 0.5); colour differs more (seen: 4.5-8.7 levels mean abs), because ffmpeg scales the
    # 4:2:0 chroma planes itself while PIL gets chroma PyAV already upsampled.
    from PIL import Image

    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = np.stack([np.clip(np.stack([128 + 100 * np.sin(x / 7 + i / 3) * np.cos(y / 9),
                                         128 + 100 * np.cos((x + y) / 11 - i / 4),
                                         128 + 60 * np.sin(np.hypot(x - 32, y - 24) / 5 + i)], -1), 0, 255)
                       for i in range(6)]).astype(np.uint8)  # [6, 48, 64, 3]
    path = tmp_path / "smooth.avi"
    subprocess.run([ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{WIDTH}x{HEIGHT}", "-r", "25", "-i", "pipe:", "-c:v", "mpeg4", "-q:v", "2", str(path)],
                   input=frames.tobytes(), check=True, timeout=60)
    ours = decode_clips(path, np.arange(6)[None], size, 16, TIMEOUT_S, scaler="bicubic").appearance[0]
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    pil = np.stack([np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC)) for rgb in decoded])
    assert ours.shape == pil.shape == (6, size, size, 3)
    luma = np.array([0.299, 0.587, 0.114])
    assert np.abs(ours.astype(float) @ luma - pil.astype(float) @ luma).mean() < 1.5
    assert np.abs(ours.astype(int) - pil.astype(int)).mean() < 12
    # The tolerance discriminates: the same frames shifted by one output pixel are far outside it.
    assert np.abs(np.roll(ours, 1, axis=2).astype(float) @ luma - pil.astype(float) @ luma).mean() > 1.5
