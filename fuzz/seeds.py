"""Writes the fuzzers' seed corpora (fuzz/corpus/<target>/), small valid inputs for each
parser, from the standard library and Pillow only (no torch, no downloaded files):

    python3 fuzz/seeds.py        # needs Pillow (for the image seeds)

The torch checkpoint seed is pickled by Python's own pickler against stand-in `torch`
modules, so its opcodes are those torch.save writes (protocol 2, BINPERSID storages,
_rebuild_tensor_v2 / OrderedDict reductions) without torch installed.
"""
import collections, io, json, os, pickle, struct, sys, types, zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- torch.save look-alikes -------------------------------------------------------------
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


def _rebuild_tensor_v2(*a):
    raise RuntimeError("stand-in")


def _rebuild_parameter(*a):
    raise RuntimeError("stand-in")


_rebuild_tensor_v2.__module__ = _rebuild_parameter.__module__ = "torch._utils"
utils._rebuild_tensor_v2, utils._rebuild_parameter = _rebuild_tensor_v2, _rebuild_parameter
for ty in ("FloatStorage", "HalfStorage", "BFloat16Storage"):
    cls = type(ty, (), {"__module__": "torch"})
    setattr(torch, ty, cls)


class Storage:
    def __init__(self, ty, key, data):
        self.ty, self.key, self.data = ty, key, data


class Tensor:
    def __init__(self, storage, offset, size, stride, param=False):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.param = param

    def __reduce__(self):
        inner = (_rebuild_tensor_v2, self.args)
        return (_rebuild_parameter, (PlainReduce(inner), False, collections.OrderedDict())) if self.param else inner


class PlainReduce:
    def __init__(self, r):
        self.r = r

    def __reduce__(self):
        return self.r


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.ty), obj.key, "cpu", len(obj.data))
        return None


def torch_save(obj, storages, prefix="archive"):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        z.writestr(f"{prefix}/byteorder", "little")
        for s in storages:
            z.writestr(f"{prefix}/data/{s.key}", s.data)
    return buf.getvalue(), out.getvalue()


f32 = Storage("FloatStorage", "0", struct.pack("<6f", 1, 2, 3, 4, 5, 6))
f16 = Storage("HalfStorage", "1", struct.pack("<4e", 0.5, -1, 2, 65504))
bf = Storage("BFloat16Storage", "2", bytes([0x80, 0x3f, 0x00, 0x40]))
state = collections.OrderedDict(
    [
        ("conv.weight", Tensor(f32, 0, (2, 3), (3, 1))),
        ("conv.bias", Tensor(f16, 1, (3,), (1,), param=True)),
        ("transposed", Tensor(f32, 0, (3, 2), (1, 3))),
        ("bf", Tensor(bf, 0, (2,), (1,))),
    ]
)
ckpt = {"unet_lora_target_modules": ["to_q", "to_k"], "rank_unet": 4, "lambda": 1.5, "state_dict_unet": state, "none": None, "flag": True}
pkl, zipped = torch_save(ckpt, [f32, f16, bf])
put("torch_zip", "state_dict.pt", zipped)
put("pickle", "state_dict.pkl", pkl)
# The pickle target's zip holds storages "0" (256 bytes) and "1" (64 bytes).
pkl2, _ = torch_save({"w": Tensor(Storage("FloatStorage", "0", b""), 2, (4, 4), (4, 1)), "h": Tensor(Storage("HalfStorage", "1", b""), 0, (8,), (2,))}, [])
put("pickle", "two_storages.pkl", pkl2)
put("pickle", "protocol4.pkl", pickle.dumps({"a": [1, -2, 3.5, "x" * 3, b"by", (1, 2), {1: None}], "b": 2**40}, protocol=4))

# ---- safetensors ------------------------------------------------------------------------
def safetensors(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "four_dtypes.safetensors", safetensors({
    "down_blocks.0.attentions.0.query.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
    "b": ("F16", [3], struct.pack("<3e", 1, 2, 3)),
    "c": ("BF16", [1], bytes([0x80, 0x3f])),
    "position_ids": ("I64", [1, 2], struct.pack("<2q", 0, 1)),
}))

# ---- ncnn: a small SRVGGNetCompact (as tests/cli.rs's compact_graph) -----------------------
def compact(f, n, scale):
    lines = ["Input input 0 1 data", "Split split 1 2 data d0 d1"]
    out = b""

    def conv(name, inp, o, cin, cout):
        nonlocal out
        lines.append(f"Convolution {name} 1 1 {inp} {o} 0={cout} 1=3 4=1 5=1 6={cin * cout * 9}")
        w = struct.pack(f"<{cin * cout * 9}e", *[((i % 7) - 3) * 0.01 for i in range(cin * cout * 9)])
        out += struct.pack("<I", 0x01306B47) + w + b"\0" * (-len(w) % 4) + struct.pack(f"<{cout}f", *[0.01] * cout)

    prev = "d0"
    for i in range(n + 1):
        conv(f"Conv_{2 * i}", prev, f"c{i}", 3 if i == 0 else f, f)
        lines.append(f"PReLU PRelu_{2 * i + 1} 1 1 c{i} p{i} 0={f}")
        out += struct.pack(f"<{f}f", *[0.25] * f)
        prev = f"p{i}"
    conv(f"Conv_{2 * n + 2}", prev, "last", f, 3 * scale * scale)
    lines.append(f"PixelShuffle shuffle 1 1 last ps 0={scale}")
    lines.append(f"Interp up 1 1 d1 near 0=1 1={scale:.6e} 2={scale:.6e}")
    lines.append("BinaryOp add 2 1 ps near output")
    return f"7767517\n{len(lines)} {len(lines) + 1}\n" + "\n".join(lines) + "\n", out


for f, n, s in [(4, 2, 4), (3, 1, 2)]:
    text, binary = compact(f, n, s)
    put("ncnn", f"compact_f{f}_n{n}_x{s}", text.encode() + b"\0" + binary)

# ---- manifest + shard --------------------------------------------------------------------
def manifest():
    shard = bytearray()
    tensors = []

    def add(name, dtype, shape, raw, part=None):
        shard.extend(b"\0" * (-len(shard) % 64))
        e = {"name": name, "dtype": dtype, "shape": shape, "shard": 0, "offset": len(shard), "length": len(raw)}
        if part:
            e["part"] = part
        tensors.append(e)
        shard.extend(raw)

    add("conv_first.weight", "f16", [2, 1, 1, 1], struct.pack("<2e", 1, 2))
    add("conv_first.bias", "f32", [2], struct.pack("<2f", 0.5, 0.25))
    add("split", "f16", [1, 3], struct.pack("<3e", 1, 2, 3), {"index": 0, "count": 2})
    add("split", "f16", [2, 3], struct.pack("<6e", 4, 5, 6, 7, 8, 9), {"index": 1, "count": 2})
    m = {"format": "onestep-sr-weights", "format_version": 1, "model_id": "seed", "architecture": "rrdbnet",
         "config": {"num_feat": 2}, "tensors": tensors,
         "shards": [{"file": "shard-00000.bin", "bytes": len(shard), "sha256": "0" * 64}], "source": {}}
    return json.dumps(m).encode() + b"\0" + bytes(shard)


put("manifest", "small", manifest())

# ---- images ------------------------------------------------------------------------------
from PIL import Image  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
for name in ("alpha_gradient_16.png", "exif_rot6.jpg"):
    with open(os.path.join(here, "..", "tests", "fixtures", "browser", name), "rb") as f:
        put("image", name, f.read())
im = Image.new("RGB", (12, 8))
im.putdata([(x * 20, y * 30, (x * y) % 256) for y in range(8) for x in range(12)])
for name, fmt, kw in [
    ("rgb.webp", "WEBP", {"quality": 80}),
    ("rgb_lossless.webp", "WEBP", {"lossless": True}),
    ("progressive.jpg", "JPEG", {"progressive": True, "quality": 90}),
    ("rgb.png", "PNG", {}),
]:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    put("image", name, b.getvalue())
for name, img in [("grey.png", im.convert("L")), ("palette.png", im.convert("P")), ("la.webp", im.convert("LA"))]:
    b = io.BytesIO()
    img.save(b, name.split(".")[1].upper().replace("JPG", "JPEG"), **({"lossless": True} if name.endswith("webp") else {}))
    put("image", name, b.getvalue())

# ---- tokenizer ---------------------------------------------------------------------------
put("tokenizer", "prompt", b"\0A photo of a CAT's 2 dogs, <|endoftext|> (walking)!")
vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "p": 3, "h": 4, "o": 5, "t": 6, "o</w>": 7, "ph": 8, "to</w>": 9, "photo</w>": 10, "!": 11}
put("tokenizer", "vocab", b"\1" + json.dumps(vocab).encode() + b"\0#version: 0.2\np h\nt o</w>\nph o\npho to</w>\n\0" + json.dumps({"pad_token": "!"}).encode())
print("seeds written to", ROOT)
