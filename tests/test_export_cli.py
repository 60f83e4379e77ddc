"""affinity-export end to end: a saved project -> every format, --json; bad input -> exit 2, no output."""
import json

import numpy as np
import pytest

from engine import export as ex
from engine.cli import export as cli
from tests.test_export import H, W, session, video  # noqa: F401  (fixtures)


@pytest.fixture()
def project(session, tmp_path):  # noqa: F811
    folder = tmp_path / "proj"
    session.save(folder)
    return folder


def test_exports_every_format(project, session, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    rc = cli.main([str(project), "--masks", str(out / "masks"), "--coco", str(out / "c.json"),
                   "--csv", str(out / "k.csv"), "--video", str(out / "o.mp4"), "--json", str(out / "sum.json")])
    assert rc == 0
    summary = json.loads((out / "sum.json").read_text())
    assert [s["format"] for s in summary["exports"]] == ["masks", "coco", "csv", "video"]
    masks = ex.read_masks(out / "masks")
    assert sorted(masks) == [0, 1, 3]
    for i in masks:
        np.testing.assert_array_equal(masks[i], session.label(i))
    coco = ex.read_coco(out / "c.json")
    np.testing.assert_array_equal(coco.masks[3], session.label(3))
    rows = ex.read_keypoints_csv(out / "k.csv")
    assert len(rows) == 6 and rows[0].source == "keyframe"
    assert ex.probe_video(out / "o.mp4")["frames"] == len(session)
    assert "masks: wrote 3 frames" in capsys.readouterr().err


def test_no_stale(project, session, tmp_path):  # noqa: F811
    session.set_keyframe(0, session.label(0).copy())   # frame 1 becomes stale
    session.save(project)
    rc = cli.main([str(project), "--masks", str(tmp_path / "m"), "--no-stale"])
    assert rc == 0 and sorted(ex.read_masks(tmp_path / "m")) == [0, 3]


@pytest.mark.parametrize("extra", [[], ["--masks", "M", "--opacity", "2"]])
def test_bad_arguments_exit_2(project, tmp_path, extra, capsys):
    extra = [str(tmp_path / e) if e == "M" else e for e in extra]
    assert cli.main([str(project), *extra]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "M").exists()


def test_missing_project_exit_2(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope"), "--coco", str(tmp_path / "c.json")]) == 2
    assert "project.json" in capsys.readouterr().err and not (tmp_path / "c.json").exists()
