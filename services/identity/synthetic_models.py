"""Synthetic ONNX models with the signatures of InsightFace buffalo_l's files, for tests and benchmarks.

No weights can be downloaded here, so the arcface code path (insightface's model routing, SCRFD decoding, alignment,
ArcFace preprocessing, batching, normalisation, onnxruntime providers) is exercised with generated models:

- `write_recognition_model`: like w600k_r50.onnx, input `input.1` [N, 3, 112, 112] -> output [N, 512]. The small
  variant is a fixed random projection of 8x8-pooled pixels (deterministic: equal crops give equal embeddings,
  different crops differ); `full_size=True` builds an IResNet-50-like stack (random weights, roughly the real
  model's depth, width and FLOPs) for throughput measurements only.
- `write_detector_model`: like det_10g.onnx (SCRFD, 3 strides x 2 anchors, 9 outputs: scores, box distances, 5
  keypoints), input `input.1` [1, 3, H, W]. It "detects" fully bright (white) cells: a white square aligned on the
  32-pixel grid on a dark background yields one face, a box of BOX_HALF px around it and fixed keypoints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17
#: half the side of the box the synthetic detector reports (pixels of the detector input)
BOX_HALF = 64.0
#: keypoint offsets (pixels of the detector input) from the cell centre: eyes, nose, mouth corners
KPS_OFFSETS = np.array([[-20.0, -12.0], [20.0, -12.0], [0.0, 4.0], [-14.0, 20.0], [14.0, 20.0]])


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="idlock-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_recognition_model(
    path: str | Path, *, dim: int = 512, seed: int = 0, full_size: bool = False
) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["None", dim])
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    if not full_size:
        nodes.append(
            helper.make_node(
                "AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8], name="pool0"
            )
        )
        nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten0"))
        w = const("proj", rng.standard_normal((3 * 14 * 14, dim)) / np.sqrt(3 * 14 * 14))
        nodes.append(helper.make_node("MatMul", ["flat", w], ["embedding"], name="fc0"))
        return _save(helper.make_graph(nodes, "synthetic_arcface", [inp], [out], inits), Path(path))

    counter = iter(range(10_000))

    def conv(x: str, cin: int, cout: int, k: int, stride: int) -> str:
        i = next(counter)
        w = const(f"w{i}", rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k)) * 0.5)
        b = const(f"b{i}", np.zeros(cout))
        y = f"c{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                name=f"conv{i}",
            )
        )
        return y

    def relu(x: str) -> str:
        y = f"r{next(counter)}"
        nodes.append(helper.make_node("Relu", [x], [y], name=f"relu_{y}"))
        return y

    x = relu(conv("input.1", 3, 64, 3, 1))
    cin = 64
    for cout, blocks in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for j in range(blocks):
            stride = 2 if j == 0 else 1
            y = conv(relu(conv(x, cin, cout, 3, 1)), cout, cout, 3, stride)
            short = x if (stride == 1 and cin == cout) else conv(x, cin, cout, 1, stride)
            s = f"add{next(counter)}"
            nodes.append(helper.make_node("Add", [y, short], [s], name=f"add_{s}"))
            x, cin = s, cout
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="flatten0"))
    w = const("fc_w", rng.standard_normal((512 * 7 * 7, dim)) / np.sqrt(512 * 7 * 7))
    nodes.append(helper.make_node("MatMul", ["flat", w], ["embedding"], name="fc0"))
    return _save(helper.make_graph(nodes, "synthetic_iresnet50", [inp], [out], inits), Path(path))


def write_detector_model(path: str | Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "H", "W"])
    nodes, inits, outputs = [], [], {}

    def const(name: str, arr: np.ndarray, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    nodes.append(
        helper.make_node(
            "Conv",
            ["input.1", const("gray_w", np.full((1, 3, 1, 1), 1 / 3))],
            ["gray"],
            kernel_shape=[1, 1],
            name="gray",
        )
    )
    for stride in (8, 16, 32):
        s = str(stride)
        nodes.append(
            helper.make_node(
                "AveragePool",
                ["gray"],
                [f"m{s}"],
                kernel_shape=[stride, stride],
                strides=[stride, stride],
                name=f"pool{s}",
            )
        )
        # score: ~0.88 for a fully white cell (input ~ +1), ~0 otherwise; the same for both anchors
        nodes.append(helper.make_node("Sub", [f"m{s}", const(f"th{s}", 0.9)], [f"d{s}"], name=f"sub{s}"))
        nodes.append(helper.make_node("Mul", [f"d{s}", const(f"k{s}", 20.0)], [f"z{s}"], name=f"mulk{s}"))
        nodes.append(helper.make_node("Sigmoid", [f"z{s}"], [f"p{s}"], name=f"sig{s}"))
        nodes.append(
            helper.make_node(
                "Mul", [f"p{s}", const(f"two{s}", np.ones((1, 2, 1, 1)))], [f"p2{s}"], name=f"anchors{s}"
            )
        )
        nodes.append(helper.make_node("Mul", [f"m{s}", const(f"zero{s}", 0.0)], [f"o{s}"], name=f"zeros{s}"))
        dist = np.full((1, 8, 1, 1), BOX_HALF / stride)
        kps = np.tile((KPS_OFFSETS / stride).reshape(1, 10), (1, 2)).reshape(1, 20, 1, 1)
        nodes.append(helper.make_node("Add", [f"o{s}", const(f"dist{s}", dist)], [f"b{s}"], name=f"box{s}"))
        nodes.append(helper.make_node("Add", [f"o{s}", const(f"kps{s}", kps)], [f"q{s}"], name=f"kps{s}"))
        for src, width, kind in ((f"p2{s}", 1, "score"), (f"b{s}", 4, "bbox"), (f"q{s}", 10, "kps")):
            t = f"t_{kind}{s}"
            nodes.append(helper.make_node("Transpose", [src], [t], perm=[0, 2, 3, 1], name=f"tr_{kind}{s}"))
            name = f"{kind}_{s}"
            nodes.append(
                helper.make_node(
                    "Reshape",
                    [t, const(f"shape_{kind}{s}", [-1, width], np.int64)],
                    [name],
                    name=f"rs_{kind}{s}",
                )
            )
            outputs[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", width])
    order = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    graph = helper.make_graph(nodes, "synthetic_scrfd", [inp], [outputs[n] for n in order], inits)
    return _save(graph, Path(path))


def write_buffalo_like_dir(folder: str | Path, *, with_detector: bool = True) -> Path:
    """A model folder laid out like buffalo_l (det_10g.onnx, w600k_r50.onnx) with synthetic models."""
    folder = Path(folder)
    write_recognition_model(folder / "w600k_r50.onnx")
    if with_detector:
        write_detector_model(folder / "det_10g.onnx")
    return folder
