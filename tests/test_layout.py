import json

import pytest

from configs.errors import UserError
from tasks.ingest.layout import has_dataset, read_mapping, validate_layout
from tests.conftest import shared_data


def _write_layout(root, videos=("aaaaaaaaaaa_1_2", "bbbbbbbbbbb_3_4"), questions_for=(1, 2)):
    (root / "video").mkdir(parents=True)
    (root / "youtube_mapping.txt").write_text("".join(f"{n} vid{i}\n" for i, n in enumerate(videos, 1)))
    records = [{"answer": "x", "id": i, "question": "what?", "video_id": v} for i, v in enumerate(questions_for)]
    for split in ("train", "val", "test"):
        (root / f"{split}_qa.json").write_text(json.dumps(records))


def test_missing_videos_are_listed_in_one_report(tmp_path):
    _write_layout(tmp_path, videos=("aaaaaaaaaaa_1_2", "bbbbbbbbbbb_3_4", "ccccccccccc_5_6"), questions_for=(1, 2, 7))
    (tmp_path / "video" / "aaaaaaaaaaa_1_2.avi").write_bytes(b"x")
    report = validate_layout(tmp_path)
    assert has_dataset(tmp_path)
    assert [v.video_id for v in report.videos] == [1, 2, 3]
    assert report.missing_videos == [2, 3]
    assert report.unmapped_video_ids == [7]
    assert report.unmapped_questions == {7: 3}  # one question about vid7 in each of the 3 splits
    assert report.ok  # set aside and reported, not fatal
    assert "3 questions about 1 video ids not in youtube_mapping.txt are set aside" in report.summary()
    (tmp_path / "val_qa.json").unlink()
    assert not validate_layout(tmp_path).ok  # a missing required file still is


def test_bad_mapping_line_names_file_and_line(tmp_path):
    (tmp_path / "youtube_mapping.txt").write_text("abc vid1\nbroken line here\n")
    with pytest.raises(UserError, match="line 2"):
        read_mapping(tmp_path / "youtube_mapping.txt")


def test_root_without_mapping_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="youtube_mapping.txt"):
        validate_layout(tmp_path)


@pytest.mark.realdata
def test_real_msvd_qa_reports_its_1965_missing_videos():
    root = shared_data("msvd-qa")
    report = validate_layout(root)
    assert len(report.videos) == 1970
    assert sum(v.path is not None for v in report.videos) == 5
    assert len(report.missing_videos) == 1965
    assert report.unmapped_video_ids == []
    assert report.ok
