""".caffemodel -> amlit checkpoint: files written in the real protobuf format by google.protobuf (a message set
built in code from caffe.proto's field numbers, independent of amlit's wire reader), read back exactly, and the
converted network against a float64 transcription of the prototxt's forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from amlit.backbones.sphereface import SphereFace
from amlit.cli import run_tool
from amlit.convert.caffe import convert_caffe, convert_layers, read_caffemodel
from amlit.errors import BadDataError, ConfigError

FIELD = descriptor_pb2.FieldDescriptorProto
UNITS = (1, 2, 4, 1)  # SphereFace-20


def caffe_messages(packed: bool):
    """Message classes for the caffe.proto fields amlit reads (names and numbers as in BVLC caffe.proto)."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"caffe_{packed}.proto", package="caffe", syntax="proto2")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name, is_packed in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".caffe.{type_name}"
            if is_packed:
                f.options.packed = packed

    optional, repeated = FIELD.LABEL_OPTIONAL, FIELD.LABEL_REPEATED
    message("BlobShape", ("dim", 1, FIELD.TYPE_INT64, repeated, None, True))
    message(
        "BlobProto",
        ("shape", 7, FIELD.TYPE_MESSAGE, optional, "BlobShape", False),
        ("data", 5, FIELD.TYPE_FLOAT, repeated, None, True),
        ("double_data", 8, FIELD.TYPE_DOUBLE, repeated, None, True),
        ("num", 1, FIELD.TYPE_INT32, optional, None, False),
        ("channels", 2, FIELD.TYPE_INT32, optional, None, False),
        ("height", 3, FIELD.TYPE_INT32, optional, None, False),
        ("width", 4, FIELD.TYPE_INT32, optional, None, False),
    )
    message(
        "LayerParameter",
        ("name", 1, FIELD.TYPE_STRING, optional, None, False),
        ("type", 2, FIELD.TYPE_STRING, optional, None, False),
        ("bottom", 3, FIELD.TYPE_STRING, repeated, None, False),
        ("top", 4, FIELD.TYPE_STRING, repeated, None, False),
        ("blobs", 7, FIELD.TYPE_MESSAGE, repeated, "BlobProto", False),
    )
    message(
        "V1LayerParameter",
        ("bottom", 2, FIELD.TYPE_STRING, repeated, None, False),
        ("top", 3, FIELD.TYPE_STRING, repeated, None, False),
        ("name", 4, FIELD.TYPE_STRING, optional, None, False),
        ("type", 5, FIELD.TYPE_INT32, optional, None, False),  # an enum on the wire: a varint
        ("blobs", 6, FIELD.TYPE_MESSAGE, repeated, "BlobProto", False),
    )
    message(
        "NetParameter",
        ("name", 1, FIELD.TYPE_STRING, optional, None, False),
        ("layers", 2, FIELD.TYPE_MESSAGE, repeated, "V1LayerParameter", False),
        ("layer", 100, FIELD.TYPE_MESSAGE, repeated, "LayerParameter", False),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}")) for name in ("NetParameter",)
    }


def sphereface_blobs(width: float, embedding: int, classes: int | None, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Caffe layer name -> blobs of a SphereFace-20 (Caffe shapes: conv (O, I, 3, 3), fc (O, I), PReLU (C,)), scaled
    so that activations stay O(1) through 20 layers."""
    rng = np.random.default_rng(seed)
    widths = [max(1, round(w * width)) for w in (64, 128, 256, 512)]
    blobs, channels = {}, 3
    for s, (out, units) in enumerate(zip(widths, UNITS, strict=True), start=1):
        blobs[f"conv{s}_1"] = [rng.normal(0, 1 / np.sqrt(9 * channels), (out, channels, 3, 3)), rng.normal(0, 0.1, out)]
        blobs[f"relu{s}_1"] = [rng.uniform(0.05, 0.5, out)]
        for k in range(2, 2 + 2 * units):
            blobs[f"conv{s}_{k}"] = [rng.normal(0, 0.3 / np.sqrt(9 * out), (out, out, 3, 3)), np.zeros(out)]
            blobs[f"relu{s}_{k}"] = [rng.uniform(0.05, 0.5, out)]
        channels = out
    blobs["fc5"] = [
        rng.normal(0, 1 / np.sqrt(channels * 42), (embedding, channels * 42)),
        rng.normal(0, 0.1, embedding),
    ]
    if classes:
        blobs["fc6_l2"] = [rng.normal(0, 1, (classes, embedding))]
    return {name: [b.astype(np.float32) for b in layer] for name, layer in blobs.items()}


LAYER_TYPES = {"conv": ("Convolution", 4), "relu": ("PReLU", 31), "fc": ("InnerProduct", 14)}


def write_caffemodel(path, blobs, v1=False, packed=True, legacy_dims=False, double=False):
    net = caffe_messages(packed)["NetParameter"](name="Face-ResNet")
    for name, layer_blobs in blobs.items():
        kind = LAYER_TYPES[next(k for k in LAYER_TYPES if name.startswith(k))]
        layer = net.layers.add(name=name, type=kind[1]) if v1 else net.layer.add(name=name, type=kind[0])
        for blob in layer_blobs:
            message = layer.blobs.add()
            if legacy_dims:  # V1-era files: 4-D num/channels/height/width, leading 1s
                dims = (1,) * (4 - blob.ndim) + blob.shape
                message.num, message.channels, message.height, message.width = dims
            else:
                message.shape.dim.extend(blob.shape)
            (message.double_data if double else message.data).extend(blob.ravel().tolist())
    path.write_bytes(net.SerializeToString())
    return path


@pytest.mark.parametrize(
    "variant",
    [{}, {"v1": True, "legacy_dims": True}, {"packed": False}, {"double": True}],
    ids=["layer", "v1-legacy-dims", "unpacked", "double_data"],
)
def test_caffemodel_round_trip_is_exact(tmp_path, variant):
    blobs = sphereface_blobs(0.125, 32, classes=7)
    path = write_caffemodel(tmp_path / "model.caffemodel", blobs, **variant)
    layers = read_caffemodel(path)
    assert [layer.name for layer in layers] == list(blobs)
    for layer in layers:
        for got, expected in zip(layer.blobs, blobs[layer.name], strict=True):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.reshape(expected.shape), expected)  # bit for bit
            if not variant.get("legacy_dims"):
                assert got.shape == expected.shape
    assert layers[0].type == ("V1:4" if variant.get("v1") else "Convolution")


def caffe_forward_float64(blobs: dict[str, list[np.ndarray]], bgr: np.ndarray) -> np.ndarray:
    """The prototxt's forward pass in float64, layer by layer as named there (sphereface_model.prototxt):
    (x - 128) * 0.0078125; per stage conv{s}_1 (3x3, stride 2, pad 1) + PReLU relu{s}_1, then residual units
    res = prev + relu(conv(relu(conv(prev)))); fc5 on the flattened (C, H, W) map. ``bgr`` (B, H, W, 3) uint8."""

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64))

    def prelu(x, slope):
        return torch.where(x > 0, x, t(slope)[None, :, None, None] * x)

    x = (t(bgr).permute(0, 3, 1, 2) - 128.0) * 0.0078125
    for s, units in enumerate(UNITS, start=1):
        weight, bias = blobs[f"conv{s}_1"]
        x = prelu(F.conv2d(x, t(weight), t(bias), stride=2, padding=1), blobs[f"relu{s}_1"][0])
        for k in range(2, 2 + 2 * units, 2):
            a = prelu(
                F.conv2d(x, t(blobs[f"conv{s}_{k}"][0]), t(blobs[f"conv{s}_{k}"][1]), padding=1),
                blobs[f"relu{s}_{k}"][0],
            )
            b = F.conv2d(a, t(blobs[f"conv{s}_{k + 1}"][0]), t(blobs[f"conv{s}_{k + 1}"][1]), padding=1)
            x = x + prelu(b, blobs[f"relu{s}_{k + 1}"][0])  # Eltwise SUM of the unit's input and output
    weight, bias = blobs["fc5"]
    return (x.flatten(1) @ t(weight).T + t(bias)).numpy()


def test_converted_network_matches_the_prototxt_in_float64(tmp_path):
    blobs = sphereface_blobs(0.25, 64, classes=None, seed=1)
    path = write_caffemodel(tmp_path / "model.caffemodel", blobs)
    output = convert_caffe(path, tmp_path / "model.ckpt", num_classes=5)
    checkpoint = torch.load(output, weights_only=True)
    record = checkpoint["amlit_conversion"]
    assert (record["depth"], record["width_multiplier"], record["embedding_dim"]) == (20, 0.25, 64)
    assert record["input_size"] == [112, 96] and record["head_from_caffe"] is False
    network = SphereFace(20, 64, (112, 96), 0.25)
    network.load_state_dict(
        {k.removeprefix("backbone."): v for k, v in checkpoint["state_dict"].items() if k != "head.weight"}
    )
    bgr = np.random.default_rng(2).integers(0, 256, (3, 112, 96, 3), dtype=np.uint8)
    expected = caffe_forward_float64(blobs, bgr)  # the Caffe model reads BGR
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float()  # amlit reads RGB
    with torch.no_grad():
        got = network((rgb - 128.0) / 128.0).numpy()
    assert np.abs(expected).max() > 0.1  # a real signal, not a vanished one
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # reading the model as RGB instead would give another network
    wrong = convert_layers(read_caffemodel(path), input_order="rgb").state_dict["backbone.stages.0.0.weight"]
    assert not torch.equal(wrong, checkpoint["state_dict"]["backbone.stages.0.0.weight"])


def test_a_converted_model_embeds_faces_with_the_papers_test_feature(tmp_path):
    """The released model converted is one to use on faces: amlit embed (and verify, export) read its inference
    record; it had none and was refused as 'written by an amlit older than this record', telling to train again.
    Its feature is the Caffe forward pass's flip-sum, L2-normalized (the paper's test protocol)."""
    import cv2

    blobs = sphereface_blobs(0.25, 64, classes=None, seed=3)
    checkpoint = convert_caffe(write_caffemodel(tmp_path / "m.caffemodel", blobs), tmp_path / "m.ckpt", num_classes=5)
    rgb = np.random.default_rng(4).integers(0, 256, (2, 112, 96, 3), dtype=np.uint8)
    for k, face in enumerate(rgb):
        (tmp_path / "faces").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "faces" / f"{k}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    run_tool(["embed", f"--model={checkpoint}", f"--images={tmp_path / 'faces'}", f"--output={tmp_path / 'f.npz'}"])
    bgr = rgb[..., ::-1]
    summed = caffe_forward_float64(blobs, bgr) + caffe_forward_float64(blobs, bgr[:, :, ::-1])  # image + mirror
    expected = summed / np.linalg.norm(summed, axis=1, keepdims=True)
    np.testing.assert_allclose(np.load(tmp_path / "f.npz")["features"], expected, atol=1e-5)
    record = torch.load(checkpoint, weights_only=True)["amlit_inference"]
    assert record["input"]["alignment_template"]["name"] == "sphereface_112x96"
    assert "converted from the Caffe model" in record["training"]["manifest"]["train"]


@pytest.mark.slow
def test_amlit_test_evaluates_a_converted_model(tiny_tree, tmp_path, monkeypatch):
    """A network saved as a Caffe model (BGR, with fc6) converts back to the same weights, which `amlit test` loads."""
    from test_cli import CONFIGS, overrides

    from amlit.cli import run_cli

    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        str(CONFIGS / "demo.yaml"),
        *overrides("demo.yaml", tiny_tree, tmp_path),
        "--trainer.logger=false",
    ]
    original = run_cli(["test", *args]).model  # an untrained network with its head, as amlit builds it
    state = {k: v.numpy() for k, v in original.state_dict().items()}
    blobs, stages = {}, [1, 2, 4, 1]
    for s, units in enumerate(stages, start=1):
        weight = state[f"backbone.stages.{s - 1}.0.weight"]
        blobs[f"conv{s}_1"] = [weight[:, ::-1] if s == 1 else weight, state[f"backbone.stages.{s - 1}.0.bias"]]  # BGR
        blobs[f"relu{s}_1"] = [state[f"backbone.stages.{s - 1}.1.weight"]]
        for unit in range(units):
            for half, k in (("a", 2 + 2 * unit), ("b", 3 + 2 * unit)):
                prefix = f"backbone.stages.{s - 1}.{2 + unit}"
                weight = state[f"{prefix}.conv_{half}.weight"]
                blobs[f"conv{s}_{k}"] = [weight, np.zeros(len(weight), np.float32)]
                blobs[f"relu{s}_{k}"] = [state[f"{prefix}.act_{half}.weight"]]
    blobs["fc5"] = [state["backbone.fc5.weight"], state["backbone.fc5.bias"]]
    blobs["fc6_l2"] = [state["head.weight"]]
    blobs = {name: [np.ascontiguousarray(b, dtype=np.float32) for b in layer] for name, layer in blobs.items()}
    path = write_caffemodel(tmp_path / "amsoftmax.caffemodel", blobs)
    run_tool(["convert", "caffe", f"--caffemodel={path}", f"--output={tmp_path / 'converted.ckpt'}"])
    converted = torch.load(tmp_path / "converted.ckpt", weights_only=True)["state_dict"]
    assert converted.keys() == original.state_dict().keys()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    cli = run_cli(["test", *args, f"--ckpt_path={tmp_path / 'converted.ckpt'}"])
    assert cli.trainer.ckpt_path == str(tmp_path / "converted.ckpt")
    assert 0 <= cli.trainer.callback_metrics["test/lfw/acc"] <= 1


def test_damaged_or_foreign_caffemodels_are_refused(tmp_path):
    blobs = sphereface_blobs(0.125, 32, classes=None)
    good = write_caffemodel(tmp_path / "good.caffemodel", blobs).read_bytes()
    (tmp_path / "truncated.caffemodel").write_bytes(good[: len(good) // 2])
    with pytest.raises(BadDataError, match=r"truncated|runs past|damaged"):
        read_caffemodel(tmp_path / "truncated.caffemodel")
    (tmp_path / "text.caffemodel").write_text('name: "Face-ResNet"\nlayer { name: "conv1_1" }\n')  # a prototxt
    with pytest.raises(BadDataError):
        read_caffemodel(tmp_path / "text.caffemodel")
    expected = r": `amlit convert caffe` expects the weights file Caffe saves \(a binary NetParameter protobuf, e\.g\."
    # random bytes: the first key is field 3 of wire type 4 (a group), which caffe.proto never uses
    (tmp_path / "junk.caffemodel").write_bytes(b"\x1c" + np.random.default_rng(0).bytes(999))
    with pytest.raises(BadDataError, match=rf"junk\.caffemodel does not look like a \.caffemodel, or is damaged "
                       rf"\(protobuf wire type 4 \(field 3\) is not used by caffe\.proto\){expected}"):  # fmt: skip
        read_caffemodel(tmp_path / "junk.caffemodel")
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(BadDataError, match=rf"empty\.caffemodel has no layers, so it does not look like a \.caffemodel"
                       rf"{expected}"):  # fmt: skip
        read_caffemodel(tmp_path / "empty.caffemodel")
    missing = {k: v for k, v in blobs.items() if k != "relu3_5"}
    with pytest.raises(BadDataError, match="relu3_5"):
        convert_layers(read_caffemodel(write_caffemodel(tmp_path / "a.caffemodel", missing)))
    biased = {**blobs, "conv2_2": [blobs["conv2_2"][0], np.ones(len(blobs["conv2_2"][1]), np.float32)]}
    with pytest.raises(BadDataError, match="conv2_2 has a non-zero bias"):
        convert_layers(read_caffemodel(write_caffemodel(tmp_path / "b.caffemodel", biased)))
    deeper = {**blobs, "conv2_6": blobs["conv2_4"], "relu2_6": blobs["relu2_4"]}
    with pytest.raises(BadDataError, match="conv2_k layers"):
        convert_layers(read_caffemodel(write_caffemodel(tmp_path / "c.caffemodel", deeper)))
    with pytest.raises(ConfigError, match=r"no fc6.*--num_classes"):
        convert_caffe(tmp_path / "good.caffemodel", tmp_path / "x.ckpt")
