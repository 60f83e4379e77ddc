"""engine.video: exact frames from containers and image folders, caching, errors."""
from __future__ import annotations

import json
import random
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from engine.errors import VideoError
from engine.video import ImageFolderSource, VideoSource, apply_rotation, natural_key

from .videos import pattern, read_index, write_empty, write_images, write_video

N = 48


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def assert_exact(src, order):
    for i in order:
        rgb = src.frame(i)
        assert rgb.shape == (src.size[1], src.size[0], 3) and rgb.dtype == np.uint8
        assert rgb.flags.c_contiguous
        assert read_index(rgb) == i, f"frame({i}) returned frame {read_index(rgb)}"


def shuffled(n, seed=0, repeat=2):
    order = list(range(n)) * repeat
    random.Random(seed).shuffle(order)
    return order


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Clips written once for the module (encoding is the slow part)."""
    d = tmp_path_factory.mktemp("clips")
    out = {"mp4": write_video(d / "b.mp4", n=N, gop=12, bframes=2)}
    out["mp4_plain"] = write_video(d / "plain.mp4", n=24, bframes=0)
    for k in (90, -90, 180):
        out[f"rot{k}"] = write_video(d / f"rot{k}.mp4", n=24, bframes=0, rotation=k)
    return out


def test_h264_bframes_random_access(clips):
    path = clips["mp4"]
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    assert any(p.dts < 0 for p in packets), "clip should have B-frames (negative dts)"
    assert [p.pts for p in packets] != sorted(p.pts for p in packets)
    assert sum(p.is_keyframe for p in packets) == N // 12

    src = VideoSource.open(path, cache_frames=4)
    assert len(src) == N and src.size == (96, 64) and src.fps == pytest.approx(24.0)
    assert src.duration == pytest.approx(N / 24, abs=1e-6)
    np.testing.assert_allclose(src.timestamps, np.arange(N) / 24, atol=1e-6)
    assert src.name == "b" and src.path == str(path) and not src.is_image_folder
    assert_exact(src, shuffled(N))
    assert_exact(src, range(N - 1, -1, -1))
    for bad in (-1, N, N + 5):
        with pytest.raises(IndexError):
            src.frame(bad)
    src.close()


@pytest.mark.parametrize("ext,codec,bframes", [
    ("mkv", "libx264", 2),
    ("avi", "mpeg4", 2),
    ("webm", "libvpx-vp9", 0),
    ("mov", "libx265", 2),
])
def test_containers_and_codecs(tmp_path, ext, codec, bframes):
    if not has_encoder(codec):
        pytest.skip(f"PyAV has no {codec} encoder")
    opts = {"x265-params": "log-level=none"} if codec == "libx265" else None
    path = write_video(tmp_path / f"c.{ext}", n=40, codec=codec, bframes=bframes, options=opts)
    with VideoSource.open(path) as src:
        assert len(src) == 40 and src.size == (96, 64)
        assert [i for i, _ in src.frames()] == list(range(40))
        assert all(read_index(rgb) == i for i, rgb in src.frames(0, 40))
        assert_exact(src, shuffled(40, seed=1, repeat=1))


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate(tmp_path, ext):
    rng = random.Random(3)
    pts = [0]
    for _ in range(N - 1):
        pts.append(pts[-1] + rng.choice([20, 40, 41, 100, 250]))
    path = write_video(tmp_path / f"vfr.{ext}", n=N, pts=pts, time_base=Fraction(1, 1000))
    src = VideoSource.open(path)
    assert len(src) == N
    np.testing.assert_allclose(src.timestamps, np.array(pts) / 1000, atol=1e-3)
    assert src.duration >= src.timestamps[-1]
    assert_exact(src, shuffled(N, seed=2))


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_nonzero_start_time(tmp_path, ext):
    pts = [5000 + 40 * i for i in range(N)]
    path = write_video(tmp_path / f"start.{ext}", n=N, pts=pts, time_base=Fraction(1, 1000))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.start_time * s.time_base == pytest.approx(5.0, abs=0.05)
    src = VideoSource.open(path)
    assert len(src) == N and src.timestamps[0] == 0.0
    assert src.start_time == pytest.approx(5.0, abs=0.05)
    np.testing.assert_allclose(np.diff(src.timestamps), 0.04, atol=1e-3)
    assert_exact(src, shuffled(N, seed=4))


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_rotated_video(clips, degrees):
    # PyAV 18 writes the display matrix (VideoStream.set_display_rotation), so the real path
    # from container metadata to VideoFrame.rotation to the returned array is exercised.
    plain = VideoSource.open(clips["mp4_plain"])
    rot = VideoSource.open(clips[f"rot{degrees}"])
    assert rot.rotation == degrees % 360
    assert rot.size == ((64, 96) if degrees % 180 else (96, 64))
    for i in (0, 7, 23, 3):
        up = rot.frame(i)
        assert (up.shape[1], up.shape[0]) == rot.size
        assert up.flags.c_contiguous
        np.testing.assert_array_equal(up, np.rot90(plain.frame(i), degrees // 90))
    # A phone video (-90) turns clockwise like ffmpeg's autorotate: the red marker that sits
    # bottom-left in the coded frame ends up top-left.
    if degrees == -90:
        corner = rot.frame(0)[:8, :8].reshape(-1, 3).mean(0)
        assert corner[0] > 150 and corner[1] < 90


def test_apply_rotation_helper():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)
    assert apply_rotation(a, 0) is a
    ccw = apply_rotation(a, 90)
    assert ccw.shape == (3, 2, 3) and ccw.flags.c_contiguous
    assert ccw[0, 0, 0] == 2  # top-right corner moves to top-left
    assert apply_rotation(a, -90)[0, 0, 0] == 3  # bottom-left corner moves to top-left
    np.testing.assert_array_equal(apply_rotation(a, 180), a[::-1, ::-1])
    np.testing.assert_array_equal(apply_rotation(a, 270), apply_rotation(a, -90))


def test_sequential_reads_do_not_seek(clips, monkeypatch):
    import engine.video as ev

    seeks = []
    real_seek = ev._Decoder._seek
    monkeypatch.setattr(ev._Decoder, "_seek", lambda self, k: (seeks.append(k), real_seek(self, k))[1])
    src = VideoSource.open(clips["mp4"], cache_frames=0)
    seeks.clear()
    src.frame(30)
    assert len(seeks) == 1
    for i in range(31, N):
        assert read_index(src.frame(i)) == i
    assert len(seeks) == 1, "scrubbing forward must keep decoding, not seek"
    seeks.clear()
    got = list(src.frames(17, 41))
    assert [i for i, _ in got] == list(range(17, 41))
    assert all(read_index(rgb) == i for i, rgb in got)
    assert len(seeks) <= 1
    seeks.clear()
    assert [i for i, _ in src.frames(0, 5)] == list(range(5)) and not seeks


def test_cache_is_bounded_and_private(clips):
    src = VideoSource.open(clips["mp4"], cache_frames=5)
    for i in range(20):
        src.frame(i)
    assert len(src._cache) == 5 and list(src._cache) == list(range(15, 20))
    a = src.frame(19)
    a[:] = 0  # the caller's copy is writable and does not leak into the cache
    assert read_index(src.frame(19)) == 19
    list(src.frames(30, 40))
    assert len(src._cache) == 5
    assert list(src.frames(3, 3)) == []
    with pytest.raises(IndexError):
        list(src.frames(0, N + 1))


def test_two_threads_share_a_source(clips):
    src = VideoSource.open(clips["mp4"], cache_frames=8)
    errors = []

    def work(seed):
        try:
            assert_exact(src, shuffled(N, seed=seed, repeat=1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def stream():
        try:
            assert all(read_index(rgb) == i for i, rgb in src.frames())
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (5, 6)] + [threading.Thread(target=stream)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_fingerprint(clips, tmp_path):
    a = VideoSource.open(clips["mp4"]).fingerprint()
    assert set(a) == {"size", "frames", "sha1"} and a["size"] == [96, 64] and a["frames"] == N
    assert json.loads(json.dumps(a)) == a
    assert VideoSource.open(clips["mp4"], cache_frames=0).fingerprint() == a
    assert VideoSource.open(clips["mp4_plain"]).fingerprint()["sha1"] != a["sha1"]
    folder = write_images(tmp_path / "imgs", [f"{i}.png" for i in range(4)])
    f = VideoSource.open(folder).fingerprint()
    assert f["frames"] == 4 and f == VideoSource.open(folder).fingerprint()


def test_close_and_context_manager(clips):
    with VideoSource.open(clips["mp4"]) as src:
        src.frame(0)
    with pytest.raises(VideoError, match="closed"):
        src.frame(1)


# ---------------------------------------------------------------------------------------- folders

def test_image_folder_natural_order(tmp_path):
    names = [f"frame{i}.png" for i in range(12)]
    folder = write_images(tmp_path / "seq", names)
    (folder / "notes.txt").write_text("not an image")
    src = VideoSource.open(folder)
    assert isinstance(src, ImageFolderSource) and src.is_image_folder
    assert len(src) == 12 and src.size == (96, 64) and src.fps == 30.0 and src.name == "seq"
    assert src.duration == pytest.approx(12 / 30)
    assert_exact(src, shuffled(12))  # frame10 after frame9, not after frame1
    assert [i for i, _ in src.frames(8, 12)] == [8, 9, 10, 11]
    assert VideoSource.open(folder, fps=12.5).timestamps[2] == pytest.approx(0.16)
    assert sorted(["a10", "a2", "a1"], key=natural_key) == ["a1", "a2", "a10"]


def test_davis_layout_and_jpeg(tmp_path):
    write_images(tmp_path / "cows" / "JPEGImages", [f"{i:05d}.jpg" for i in range(6)])
    (tmp_path / "cows" / "Annotations").mkdir()
    src = VideoSource.open(tmp_path / "cows")
    assert len(src) == 6 and src.name == "cows"
    assert_exact(src, [5, 0, 3])


def test_image_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no images"):
        VideoSource.open(empty)
    odd = write_images(tmp_path / "odd", ["1.png", "2.png", "3.png"])
    write_images(tmp_path / "big", ["x.png"], size=(112, 64))
    (tmp_path / "big" / "x.png").replace(odd / "2.png")
    with pytest.raises(VideoError, match=r"2\.png.*112x64"):
        VideoSource.open(odd)
    broken = write_images(tmp_path / "broken", ["1.png", "2.png"])
    (broken / "3.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(VideoError, match=r"3\.jpg"):
        VideoSource.open(broken)


# ----------------------------------------------------------------------------------- bad inputs

def test_missing_path(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        VideoSource.open(tmp_path / "nope.mp4")


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="noise.mp4"):
        VideoSource.open(p)


def test_zero_frames(tmp_path):
    with pytest.raises(VideoError, match="contains no frames"):
        VideoSource.open(write_empty(tmp_path / "empty.avi", codec="mpeg4"))
    with pytest.raises(VideoError):  # mp4 drops an empty track: "has no video stream"
        VideoSource.open(write_empty(tmp_path / "empty.mp4"))
    with pytest.raises(VideoError):
        VideoSource.open(write_empty(tmp_path / "empty.mkv"))


def test_no_video_stream(tmp_path):
    p = tmp_path / "sound.mkv"
    with av.open(str(p), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in s.encode(frame):
            out.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        VideoSource.open(p)


def test_duplicate_timestamps_are_refused(tmp_path):
    path = tmp_path / "same.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        frames = [av.VideoFrame.from_ndarray(pattern(i), format="rgb24") for i in range(10)]
        for frame in frames + [None]:
            for packet in s.encode(frame):
                packet.pts = packet.dts = 0  # a broken muxer: every frame at t=0
                out.mux(packet)
    with pytest.raises(VideoError, match="repeat another frame's timestamp"):
        VideoSource.open(path)


def test_unsupported_codec(tmp_path):
    good = write_video(tmp_path / "m.avi", n=12, codec="mpeg4", bframes=0)
    bad = tmp_path / "unknown.avi"
    bad.write_bytes(good.read_bytes().replace(b"FMP4", b"QQQZ"))
    with pytest.raises(VideoError, match="unsupported codec"):
        VideoSource.open(bad)


@pytest.mark.parametrize("ext,faststart", [("mp4", False), ("mp4", True), ("mkv", False), ("avi", False)])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_refused(tmp_path, ext, faststart, keep):
    path = tmp_path / f"full.{ext}"
    if faststart:  # header first: the demuxer knows all 48 frames but finds only some
        _write_faststart(path)
    else:
        write_video(path, n=N, codec="mpeg4" if ext == "avi" else "libx264")
    data = path.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(VideoError, match="cut"):
        VideoSource.open(cut)


def _write_faststart(path):
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=24, options={"x264-params": "keyint=12:bframes=2:scenecut=0"})
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i in range(N):
            for p in s.encode(av.VideoFrame.from_ndarray(pattern(i), format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


@pytest.mark.parametrize("ext,codec", [("mp4", "libx264"), ("avi", "mpeg4")])
def test_damaged_frame_raises_never_wrong(tmp_path, ext, codec):
    """Overwrite the bytes of frame 20: frame(20), and any frame that might reference it, raise
    VideoError naming the index; every frame that is returned is the right one."""
    path = write_video(tmp_path / f"v.{ext}", n=N, codec=codec)
    with av.open(str(path)) as c:
        packets = sorted((p.pts, p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size)
    _, pos, size = packets[20]
    data = bytearray(path.read_bytes())
    data[pos:pos + size] = b"\xff" * size
    bad = tmp_path / f"bad.{ext}"
    bad.write_bytes(bytes(data))
    src = VideoSource.open(bad, cache_frames=0)
    failed = set()
    for i in shuffled(len(src), seed=7, repeat=1) + list(range(len(src))):
        try:
            assert read_index(src.frame(i)) == i
        except VideoError as e:
            assert f"frame {i} " in str(e)
            failed.add(i)
    assert 20 in failed and len(failed) < 12


# ------------------------------------------------------------------------------------ real data

def test_davis_blackswan(shared):
    from PIL import Image

    seq = shared / "data" / "davis2016" / "blackswan"
    if not seq.is_dir():
        pytest.skip("blackswan not in shared data")
    src = VideoSource.open(seq)
    jpgs = sorted((seq / "JPEGImages").glob("*.jpg"))
    assert len(src) == len(jpgs) and src.name == "blackswan"
    np.testing.assert_array_equal(src.frame(5), np.asarray(Image.open(jpgs[5]).convert("RGB")))


def test_real_clip_random_equals_sequential(shared):
    clip = shared / "data" / "train_videos" / "fresco-boxer-punching-towards-camera.mp4"
    if not clip.exists():
        clips = sorted((shared / "data" / "train_videos").glob("*.mp4"))
        if not clips:
            pytest.skip("no training clips in shared data")
        clip = clips[0]
    src = VideoSource.open(clip, cache_frames=0)
    seq = [rgb for _, rgb in src.frames()]
    assert len(seq) == len(src) > 0
    rng = random.Random(11)
    for i in [rng.randrange(len(src)) for _ in range(20)]:
        np.testing.assert_array_equal(src.frame(i), seq[i], err_msg=f"frame {i}")


def test_cache_capacity_can_be_changed(tmp_path):
    folder = write_images(tmp_path / "imgs", [f"{k:03d}.png" for k in range(6)])
    v = VideoSource.open(folder, cache_frames=4)
    for i in range(6):
        v.frame(i)
    assert v.cache_frames == 4 and len(v._cache) == 4
    v.set_cache_frames(2)
    assert len(v._cache) == 2 and v.cache_frames == 2
    assert read_index(v.frame(0)) == 0
