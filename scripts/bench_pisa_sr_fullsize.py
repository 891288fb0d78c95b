#!/usr/bin/env python3
"""Helper of scripts/bench-pisa-sr-fullsize.sh (torch venv: diffusers 0.42.1 + peft, CPU).

  make OUT    full-size random SD 2.1-base UNet + VAE + text encoder in the official diffusers
              layout (configs tests/fixtures/sd/sd21_base_*_config.json, fp16 safetensors),
              the real SD2 tokenizer (copied from the fixtures), pisa_sr.pkl with random
              full-size pix/sem LoRAs attached the official way (peft add_adapter on the
              official target lists, r = 4, gaussian init; lora_B and conv_in redrawn as in
              tests/fixtures/sd/generate.py), the null-prompt embedding, and a 128 x 128 photo.
  torch OUT   one PiSA-SR default-mode pass per run, diffusers + peft in fp32 on the CPU, on
              that photo with the official pre-processing (process size 512 -> 512 x 512):
              VAE encode (latent mean) + UNet(t = 1, null prompt, all six adapters) + VAE
              decode + AdaIN colour fix. Prints one JSON line with seconds per stage.
"""
import json
import os
import shutil
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests", "fixtures", "sd")
# The official LoRA target rule and checkpoint loader, shared with the fixture generator.
sys.path.insert(0, FIX)
import generate as ref  # noqa: E402

SEED = 1234
RANK = 4
LORA_B_STD = 0.02
CONV_IN_STD = 0.02
def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def lora_conf(targets):
    return ref.lora_conf(RANK, targets)


def config(name):
    with open(os.path.join(FIX, f"sd21_base_{name}_config.json")) as f:
        return json.load(f)


@torch.no_grad()
def make(out):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel
    from PIL import Image
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    os.makedirs(out, exist_ok=True)

    log("UNet: random init (865.9 M params)")
    unet = UNet2DConditionModel.from_config(config("unet")).to(torch.float16)
    unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    log("VAE")
    vae = AutoencoderKL.from_config(config("vae")).to(torch.float16)
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    del vae

    log("text encoder (transformers 4.x layout)")
    te_cfg = config("text_encoder")
    te = CLIPTextModel(CLIPTextConfig(**te_cfg)).eval()
    ids = torch.tensor([[49406, 49407] + [0] * 75])
    emb = te(ids)[0].float().contiguous()
    save_file({"text_emb_null": emb}, os.path.join(out, "null_emb.safetensors"))
    sd = {(k if k.startswith("text_model.") else "text_model." + k): v.to(torch.float16).contiguous()
          for k, v in te.state_dict().items() if not k.endswith("position_ids")}
    sd["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    os.makedirs(os.path.join(out, "text_encoder"), exist_ok=True)
    save_file(sd, os.path.join(out, "text_encoder", "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(FIX, "sd21_base_text_encoder_config.json"), os.path.join(out, "text_encoder", "config.json"))
    del te, sd
    shutil.copytree(os.path.join(FIX, "tokenizer"), os.path.join(out, "tokenizer"), dirs_exist_ok=True)

    log("PiSA-SR LoRAs (peft add_adapter x 6)")
    enc, dec, oth = ref.unet_targets(unet)
    unet = unet.float()
    for sfx in ["pix", "sem"]:
        for name, lst in [("encoder", enc), ("decoder", dec), ("others", oth)]:
            unet.add_adapter(lora_conf(lst), adapter_name=f"default_{name}_{sfx}")
    for n, p in unet.named_parameters():
        if ".lora_A." in n:
            p.data.copy_(torch.randn(p.shape, generator=gen) / p.shape[0])
        elif ".lora_B." in n:
            p.data.copy_(torch.randn(p.shape, generator=gen) * LORA_B_STD)
    base = unet.conv_in.base_layer
    base.weight.add_(torch.randn(base.weight.shape, generator=gen) * CONV_IN_STD)
    base.bias.add_(torch.randn(base.bias.shape, generator=gen) * CONV_IN_STD)
    ck = {
        "unet_lora_encoder_modules_pix": enc, "unet_lora_decoder_modules_pix": dec, "unet_lora_others_modules_pix": oth,
        "unet_lora_encoder_modules_sem": enc, "unet_lora_decoder_modules_sem": dec, "unet_lora_others_modules_sem": oth,
        "lora_rank_unet_pix": RANK, "lora_rank_unet_sem": RANK,
        "state_dict_unet": {k: t.clone() for k, t in unet.state_dict().items() if "lora" in k or "conv_in" in k},
    }
    assert len(enc) + len(dec) + len(oth) == 258, (len(enc), len(dec), len(oth))
    torch.save(ck, os.path.join(out, "pisa_sr.pkl"))
    log(f"pisa_sr.pkl: {len(ck['state_dict_unet'])} tensors")

    img = Image.open(os.path.join(ROOT, "tests/fixtures/realesrgan/astronaut_256.png")).convert("RGB")
    img.crop((64, 64, 192, 192)).save(os.path.join(out, "photo_128.png"))
    log("done")


def adain(t, s, eps=1e-5):
    def ms(x):
        b, c = x.shape[:2]
        v = x.reshape(b, c, -1).var(dim=2) + eps
        return x.reshape(b, c, -1).mean(dim=2).reshape(b, c, 1, 1), v.sqrt().reshape(b, c, 1, 1)
    mt, st = ms(t)
    m, sd = ms(s)
    return ((t - mt) / st * sd + m).clamp(0, 1)


@torch.inference_mode()
def bench(out, runs):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from PIL import Image
    import numpy as np
    torch.set_num_threads(os.cpu_count())
    t0 = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(out, subfolder="unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(out, subfolder="vae", torch_dtype=torch.float32).eval()
    ck = torch.load(os.path.join(out, "pisa_sr.pkl"), weights_only=False)
    # the official PiSASR_eval loader: add the six adapters, copy every lora / conv_in tensor
    ref.load_pisa(unet, ck)
    unet.set_adapter(ref.PISA_ALL)  # default mode: W_pix + dW_sem in one pass
    emb = load_file(os.path.join(out, "null_emb.safetensors"))["text_emb_null"]
    load_s = time.perf_counter() - t0

    img = Image.open(os.path.join(out, "photo_128.png")).convert("RGB")
    if img.width < 128 or img.height < 128:
        raise SystemExit("expects a 128 x 128 input")
    up = img.resize((img.width * 4, img.height * 4))  # PIL bicubic; 512 is a multiple of 8
    src = torch.from_numpy(np.asarray(up).copy()).permute(2, 0, 1)[None].float() / 255
    x = src * 2 - 1
    sf = vae.config.scaling_factor
    t1 = torch.tensor([1], dtype=torch.long)
    passes = []
    for _ in range(runs):
        t = time.perf_counter()
        z = vae.encode(x).latent_dist.mean * sf
        enc = time.perf_counter() - t
        eps = unet(z, t1, encoder_hidden_states=emb).sample
        z_h = z - eps
        un = time.perf_counter() - t - enc
        o = vae.decode(z_h / sf).sample.clamp(-1, 1) * 0.5 + 0.5
        o = adain(o, src)
        tot = time.perf_counter() - t
        passes.append({"encode_s": enc, "unet_s": un, "decode_s": tot - enc - un, "total_s": tot})
        log("torch pass", passes[-1])
    totals = sorted(p["total_s"] for p in passes)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "network_input": list(x.shape),
                      "latent": list(z.shape), "load_s": load_s, "runs": passes, "median_s": totals[len(totals) // 2],
                      "finite": bool(torch.isfinite(o).all())}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "torch":
        bench(sys.argv[2], int(os.environ.get("RUNS", "1")))
    else:
        raise SystemExit(__doc__)
