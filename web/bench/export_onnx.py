#!/usr/bin/env python3
"""Export the converted Real-ESRGAN x4plus (weight format v1: manifest.json + shards) to ONNX
with the same weights, for the onnxruntime-web comparison (web/bench/ort.mjs).

RRDBNet is written out here as in basicsr (conv_first, 23 RRDB of 3 dense blocks, conv_body,
two nearest x2 + conv + LeakyReLU, conv_hr, conv_last); tensor names are the manifest's.
The input shape is fixed (one tile, as our pipeline runs it), f32.

    python web/bench/export_onnx.py models/realesrgan-x4plus OUT.onnx --size 36
(needs torch, onnx and onnxscript)
"""
import argparse
import hashlib
import json
import pathlib

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def load(model_dir):
    d = pathlib.Path(model_dir)
    m = json.loads((d / "manifest.json").read_text())
    shards = []
    for s in m["shards"]:
        b = (d / s["file"]).read_bytes()
        assert hashlib.sha256(b).hexdigest() == s["sha256"], s["file"]
        shards.append(b)
    parts = {}
    for t in m["tensors"]:
        raw = shards[t["shard"]][t["offset"]:t["offset"] + t["length"]]
        a = np.frombuffer(raw, dtype=np.float16 if t["dtype"] == "f16" else np.float32).astype(np.float32)
        parts.setdefault(t["name"], []).append(a.reshape(t["shape"]))
    return m["config"], {k: torch.from_numpy(np.concatenate(v, 0)) for k, v in parts.items()}


class RDB(nn.Module):
    def __init__(self, f, g):
        super().__init__()
        for k in range(1, 6):
            setattr(self, f"conv{k}", nn.Conv2d(f + (k - 1) * g, f if k == 5 else g, 3, 1, 1))

    def forward(self, x):
        feats = [x]
        for k in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, f, g):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = RDB(f, g), RDB(f, g), RDB(f, g)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        f, g = c["num_feat"], c["num_grow_ch"]
        self.conv_first = nn.Conv2d(c["num_in_ch"], f, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(f, g) for _ in range(c["num_block"])])
        self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, c["num_out_ch"], 3, 1, 1)

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=36, help="tile side (a 16x16 input + 2x10 padding)")
    a = ap.parse_args()
    config, weights = load(a.model)
    net = RRDBNet(config).eval()
    missing, unexpected = net.load_state_dict(weights, strict=True), None
    x = torch.rand(1, 3, a.size, a.size)
    torch.onnx.export(net, (x,), a.out, input_names=["input"], output_names=["output"], opset_version=17, dynamo=False)
    print(f"wrote {a.out} ({pathlib.Path(a.out).stat().st_size} bytes), input [1, 3, {a.size}, {a.size}]")


if __name__ == "__main__":
    main()
