"""Files made before the package was laid out in subpackages keep working, and the CLI kept its
commands and flags: a ``.rpol``, an FP32 and an INT8 ``.onnx`` and an engine sidecar, written by
the flat-layout code (tests/fixtures/pre_layout/README.md says how), load, run and give the boxes
they gave then; what today's code writes carries the same metadata fields."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import rpol_edge
from rpol_edge.core.engine_meta import check_engine_compatible, check_engine_fresh, read_engine_meta
from rpol_edge.core.metadata import MetadataError
from rpol_edge.core.model_file import read_meta

FIX = Path(__file__).parent / "fixtures" / "pre_layout"
EXPECTED = json.loads((FIX / "expected.json").read_text())
PHOTOS = [rpol_edge.SAMPLE_ROOT / "JPEGImages" / name for name in EXPECTED["images"]]
WEIGHTS = FIX / "test_efficientnet.pth"
ARTIFACTS = {
    "rpol": (FIX / "tiny.rpol", {"runtime": "torch", "device": "cpu", "weights": WEIGHTS}),
    "onnx": (FIX / "exp" / "model.onnx", {"device": "cpu"}),
}
OLD_INT8 = FIX / "exp-int8" / "model.int8.onnx"

MODEL_FILE = "model file: a fitted .rpol, an exported .onnx, an OpenVINO .xml or a TensorRT .engine"
EXPORT_MODEL = "the fitted .rpol model, or an exported .onnx graph (see above for which formats)"
WORKERS = "image-decoding worker processes (0: decode in this one)"

# Help wording changed on purpose with the layout (the words of how the work was organised went).
WORDING = [
    # --output-stride works on EfficientNets too (dilated)
    (
        "--output-stride <int> ResNet output stride 32/16/8",
        "--output-stride <int> backbone output stride 32/16/8 (ResNets: stride 1, EfficientNets: dilated)",
    ),
    ("against the seed's reference pipeline", "against the reference pipeline"),
    ("time the seed's reference pipeline", "time the reference implementation's pipeline"),
    ('(README, "Scale-out")', "(docs/scale-out.md)"),
    ("auto | torch | ort | trt", "auto | torch | ort | openvino | trt"),  # OpenVINO joined the runtimes
    # what predict and explain take: folders and patterns too, one rule everywhere
    (
        "<list[Path]> image files [required]",
        "<list[Path]> image files, folders (every image under them, recursively) or "
        "quoted patterns ('photos/*.jpg', 'data/**/*.png') [required]",
    ),
    (
        "Box (original pixels, JSON) and overlay PNG for each image.",
        "Box (original pixels, JSON) and overlay PNG for each image, and all boxes in predictions.jsonl.",
    ),
    (
        "query image(s): one pass over the training set",
        "query image(s), folders or quoted patterns: one pass over the training set",
    ),
    # run takes several sources at once (batched)
    ("Options --source <str> camera,", "Options --source <list[str]> camera,"),
    (
        "image file, folder or glob --camera",
        "image file, folder or glob; repeat it for several streams, batched into one inference call --camera",
    ),
    (
        "with flushed outputs. Exit codes:",
        "with flushed outputs. Several sources (repeat --source, or list them in a file for --sources) "
        "run together: their "
        "frames are batched into one inference call, each stream reads, drops and reconnects on its own, "
        "records carry the stream's number, and --max-frames counts per stream. {stream} in --save, --jsonl "
        "or --save-frames gives one output per stream; without it --save and --show are a tiled mosaic. "
        "Exit codes:",
    ),
    (
        "stop after this many frames --open-timeout",
        "stop after this many frames (of each stream) --open-timeout",
    ),
    # --onnx is accepted but no longer offered: the graph is always written (the description says so)
    ("--onnx <bool> the fused ONNX graph (always written: every format starts from it) [default: True] ", ""),
    # an exported .onnx gives three formats (TensorRT, OpenVINO, Triton), not only the engine; the
    # ONNX graph is always written from a .rpol (--onnx is no longer offered)
    (
        "MODEL is the fitted .rpol; or, with --trt on the device, an exported .onnx to build the engine "
        "from (no PyTorch needed there). Arguments",
        "MODEL: the fitted .rpol, or an exported .onnx (no PyTorch) for --trt, --openvino, --triton. "
        "From a .rpol the ONNX graph (model.onnx) is always written: every other format starts from it. "
        "Arguments",
    ),
    # on/off flags take no value: no value type shown
    (" <bool> ", " "),
    # every option and argument described, in words that fit an 80-column help column
    *[
        (f"* model <path> [required] {after}", f"* model <path> {MODEL_FILE} [required] {after}")
        for after in ("Options --help", "Options --runtime", "Options * --root", "* images")
    ],
    (
        "* model <path> [required] Options --output",
        f"* model <path> {EXPORT_MODEL} [required] Options --output",
    ),
    ("model <path> model file (.rpol), ONNX file or TensorRT engine", f"model <path> {MODEL_FILE}"),
    ("[default: <REPO>/rpol_edge/sample/JPEGImages]", "[default: (the bundled sample photos)]"),
    ("--iters <int> [default", "--iters <int> timed calls per row and batch size [default"),
    ("--warmup <int> [default", "--warmup <int> untimed calls before them [default"),
    (
        "--batch-size <int> [default: 16] --workers <int> decoding",
        "--batch-size <int> images per backbone call [default: 16] --workers <int> decoding",
    ),
    ("--workers <int> decoding worker processes [", f"--workers <int> {WORKERS} ["),
    ("--workers <int> [", f"--workers <int> {WORKERS} ["),
    ("--input-size <int> [default: 448] --workers", "--input-size <int> network input K (square) of the fit "
     "[default: 448] --workers"),  # fmt: skip
    ("--batch-size <int> [", "--batch-size <int> images per inference call ["),
    ("--seed <int> [", "--seed <int> random seed of the --sampling-ratio draw ["),
    ("--calib-split <str> [", "--calib-split <str> split of the INT8 calibration data ["),
    # fit takes frames of a source (--source, --frames, --every) instead of a data set
    (
        "write the model file. Under torchrun (`torchrun --nproc-per-node N -m rpol_edge fit ...`) each "
        "rank fits its shard and rank 0",
        "write the model file. The images: a data set (--data, --root, --split) or --frames N frames of a "
        "camera, stream, video file or folder (--source), one every --every seconds. Ctrl-C saves a "
        "checkpoint; run again with --resume. Under torchrun (`torchrun --nproc-per-node N -m rpol_edge "
        "fit ...`) each rank fits its shard of a data set and rank 0",
    ),
    ("Options * --root <path> data-set root folder [required] --data <str> cub | wsol | voc | folder "
     "[default: folder] --split <str> split name (train, test, ...) [default: train]",
     "Options --root <path> data-set root folder --data <str> cub | wsol | voc | folder "
     "[default: (folder)] --split <str> split name (train, test, ...) [default: (train)]"),  # fmt: skip
    (
        "continue from the checkpoints of the same command [default: no-resume]",
        "continue from the checkpoints of the same command (a --source video or folder is read again and "
        "the frames already added are passed over; a live source goes on) [default: no-resume]",
    ),
    # the scene rule (a fixed camera) joined the operating points
    (
        "otsu | fraction (top --fraction) --threshold",
        "otsu | fraction (top --fraction) | scene (a fixed camera: fit on its own frames; evidence against "
        "the scene at --scene-level) | zscore (a fixed camera: w* response in its cell's standard "
        "deviations, above --zscore-level) --threshold",
    ),
    ("--workspace-mb <int> [", "--workspace-mb <int> TensorRT builder workspace memory limit, in MB ["),
    (
        "--source <list[str]> camera, stream, video file, image file, folder or glob: camera://N (same as "
        "--camera N), csi://N (Jetson CSI camera; options ?width=&height=&fps=&flip=), v4l2:///dev/videoN, "
        "rtsp://host/stream, rtsps://host/stream, http://host/stream (MJPEG), https://host/stream (MJPEG), "
        "file:///path, or a video file, image file, folder or glob;",
        "--source <list[str]> a camera, stream, video file, image file, folder or glob: a path, or a URI "
        "(camera://, csi://, v4l2://, rtsp://, rtsps://, http://, https://, file://; their forms and "
        "options: docs/live.md);",
    ),
]

# Options that now take more than they did (the old use still works): the recorded field changed.
WIDENED = {
    ("run", "source"): {"multiple": True},
    # fit takes a source instead of a data set: --root is no longer required, and the data-set
    # defaults (folder, train) are shown as they were but applied only without --source
    ("fit", "root"): {"required": False},
    ("fit", "data"): {"default": ""},
    ("fit", "split"): {"default": None},
}


@pytest.mark.parametrize("kind", list(ARTIFACTS))
def test_old_artifacts_give_the_same_boxes(kind: str) -> None:
    if kind == "rpol":
        pytest.importorskip("torch")
    path, options = ARTIFACTS[kind]
    with rpol_edge.load(path, **options) as model:
        got = [model.predict(p) for p in PHOTOS]
    for want, det in zip(EXPECTED["boxes"][kind], got, strict=True):
        assert list(det.box or []) == want["box"]
        assert det.score == pytest.approx(want["score"], abs=2e-6)


def _boxes(path: Path) -> list[tuple[tuple[int, int, int, int] | None, float]]:
    with rpol_edge.load(path, device="cpu") as model:
        return [(d.box, round(d.score, 6)) for d in map(model.predict, PHOTOS)]


def test_old_int8_graph_is_what_an_export_writes_today(tmp_path: Path) -> None:
    """ONNX Runtime's integer kernels differ by CPU (AVX2 vs AVX-512 VNNI: the same INT8 file gave
    box (111, 53, 298, 179) where it was written and (116, 75, 298, 179) on an AMD EPYC with
    AVX-512 VNNI, both with the flat-layout code), so recorded INT8 boxes are not portable. What is:
    today's export of the same FP32 graph with the recipe the old file records is the same graph
    (scales and zero points), and on this machine both give the same boxes."""
    pytest.importorskip("onnx")
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.exporters.int8 import Recipe, quantize_int8

    old = read_onnx_meta(OLD_INT8)
    fields = json.loads(old.extra["int8_recipe"])
    recipe = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    new_path = tmp_path / "model.int8.onnx"
    new = quantize_int8(ARTIFACTS["onnx"][0], new_path, "voc", rpol_edge.SAMPLE_ROOT, "train", recipe=recipe)
    assert sorted(dataclasses.asdict(new)) == EXPECTED["meta_fields"]
    assert new.extra["int8_recipe"] == old.extra["int8_recipe"]

    def tensors(path: Path) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    a, b = tensors(OLD_INT8), tensors(new_path)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert _boxes(OLD_INT8) == _boxes(new_path)


def test_old_engine_sidecar_still_reads_and_guards() -> None:
    engine = FIX / "exp" / "model.engine"
    meta = read_engine_meta(engine)
    check_engine_fresh(meta, engine)  # its ONNX beside it is the one it was built from
    check_engine_compatible(meta, "10.3.0.30", "Orin", "8.7")
    with pytest.raises(MetadataError, match="TensorRT 10.3.0.30, this machine has 10.15"):
        check_engine_compatible(meta, "10.15.1.29", "Orin", "8.7")
    assert sorted(dataclasses.asdict(meta.model)) == EXPECTED["meta_fields"]
    assert meta.model == read_meta(FIX / "exp" / "model.onnx")


def test_new_files_carry_the_same_metadata_fields(sample_model: Path, sample_onnx: Path) -> None:
    for path in (sample_model, sample_onnx):
        assert sorted(dataclasses.asdict(read_meta(path))) == EXPECTED["meta_fields"], path.name


# Options added since the layout change, on purpose (the first-day findings): the old ones must
# stay as they were; these are left out of the comparison (their parameter and their help line).
ADDED = {
    "predict": ("min_area", "json_out", "boxes"),
    "run": ("min_area", "sources", "realtime", "batch_wait_ms", "boxes"),
    "info": ("json_out",),
    "export": ("openvino", "openvino_precision", "triton", "triton_name", "deepstream"),
    "compare": ("runtime", "ref_runtime"),
    "eval": ("boxes",),
    "fit": ("source", "frames", "every", "scene_level", "zscore_level"),
}

# Commands added since the layout change (all their options are new).
NEW_COMMANDS = ("serve", "client", "refit")


def _long(param: dict[str, object]) -> str:
    """The flag a help entry begins with: its long form (``--output``, not ``-o``)."""
    opts = [str(o) for o in param["opts"]]  # type: ignore[attr-defined]
    return next((o for o in opts if o.startswith("--")), opts[0])


def _without_added(words: str, params: list[dict[str, object]], added: tuple[str, ...]) -> str:
    """The help words without the added options' entries: from an added flag to the next kept
    option's flag (a description may name an added flag: "frames of --source"; only the options
    list, after "Options", is searched)."""
    kept = [_long(p) for p in params if p["name"] not in added] + ["--help"]
    options_at = max(words.find(" Options "), 0)
    for p in params:
        if p["name"] in added:
            flag = _long(p)
            start = words.find(f" {flag} ", options_at) + 1
            if start == 0:  # removed with an added entry before it
                continue
            ends = [i for f in kept if (i := words.find(f" {f} ", start)) != -1]
            words = words[:start] + words[min(ends) + 1 :] if ends else words[:start]
    return words


def _words(text: str) -> str:
    """Help text without the box drawing and the line wrapping (a reworded line reflows)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_cli_commands_and_flags_unchanged() -> None:
    from cli_surface import surface

    before = json.loads((FIX / "cli.json").read_text())
    now = surface()
    assert sorted(set(now) - set(NEW_COMMANDS)) == sorted(before), "commands added or removed"
    for name, old in before.items():
        added = ADDED.get(name, ())
        kept = [p for p in now[name]["params"] if p["name"] not in added]
        was = [p | WIDENED.get((name, str(p["name"])), {}) for p in old["params"]]
        assert kept == was, f"{name}: parameters changed"
        assert len(now[name]["params"]) - len(kept) == len(added), f"{name}: an added option is missing"
        help_before = _words(old["help"]).replace("Usage: root", "Usage: rpol-edge")
        for a, b in WORDING:
            help_before = help_before.replace(a, b)
        help_now = _without_added(_words(now[name]["help"]), now[name]["params"], added)
        assert help_now.replace("Usage: root", "Usage: rpol-edge") == help_before, name
