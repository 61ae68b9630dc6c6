"""Third-party CTR models, built unmodified from their libraries with small synthetic feature sets.

Each builder returns (module, make_inputs(batch, seed)); inputs are what the library's forward takes:
DeepCTR-Torch one float tensor [B, columns] (ids stored as floats, as its predict() builds it),
torch-rechub a dict {feature: tensor [B] or [B, L]}, the reference DLRM (dense, offsets [tables, B],
[flat ids per table]).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Builder = Callable[[], tuple[torch.nn.Module, Callable[[int, int], tuple[Any, ...]]]]
VOCAB, DIM, N_SPARSE, N_DENSE, SEQ = 60, 8, 5, 3, 6


# -- DeepCTR-Torch (shenweichen/DeepCTR-Torch) --------------------------------------------------------------
def _deepctr_columns(history: bool = False) -> tuple[list[Any], list[str]]:
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    cols: list[Any] = [SparseFeat(f"C{i}", vocabulary_size=VOCAB, embedding_dim=DIM) for i in range(N_SPARSE)]
    cols += [DenseFeat(f"I{i}", 1) for i in range(N_DENSE)]
    if history:
        cols.append(VarLenSparseFeat(SparseFeat("hist_C0", vocabulary_size=VOCAB, embedding_dim=DIM,
                                                embedding_name="C0"), maxlen=SEQ, length_name="seq_length"))
        cols.append(DenseFeat("seq_length", 1))
    return cols, [c.name for c in cols]


def _deepctr_inputs(model: torch.nn.Module) -> Callable[[int, int], tuple[torch.Tensor]]:
    index = model.feature_index  # name -> (start, end) columns of X

    def make(batch: int, seed: int) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        width = max(end for _, end in index.values())
        x = torch.zeros(batch, width)
        for name, (start, end) in index.items():
            if name.startswith("C") or name.startswith("hist_"):
                x[:, start:end] = torch.randint(1, VOCAB, (batch, end - start), generator=g).float()
            elif name == "seq_length":
                x[:, start:end] = torch.randint(1, SEQ + 1, (batch, 1), generator=g).float()
            else:
                x[:, start:end] = torch.rand(batch, end - start, generator=g)
        return (x,)
    return make


def deepctr(name: str, **kw: Any) -> Builder:
    def build() -> tuple[torch.nn.Module, Callable[[int, int], tuple[Any, ...]]]:
        import deepctr_torch.models as zoo

        torch.manual_seed(0)
        history = name in ("DIN", "DIEN")
        cols, _ = _deepctr_columns(history)
        cls = getattr(zoo, name)
        if name in ("AFM", "PNN", "CCPM", "MLR"):  # sparse features only (AFM refuses dense ones; PNN takes one column list)
            cols = [c for c in cols if not c.name.startswith("I")]
        if history:
            model = cls(cols, ["C0"], device="cpu", **kw)
        elif name == "PNN":
            model = cls(cols, device="cpu", **kw)
        elif name == "MLR":
            model = cls(cols, device="cpu", **kw)
        elif name in ("MMOE", "PLE", "ESMM", "SharedBottom"):
            model = cls(cols, task_types=("binary", "binary"), task_names=("ctr", "cvr"), device="cpu", **kw)
        else:
            model = cls(cols, cols, device="cpu", **kw)
        return model.eval(), _deepctr_inputs(model)
    return build


# -- torch-rechub (datawhalechina/torch-rechub) -------------------------------------------------------------
def _rechub_features() -> tuple[list[Any], list[Any]]:
    from torch_rechub.basic.features import DenseFeature, SparseFeature

    sparse = [SparseFeature(f"C{i}", vocab_size=VOCAB, embed_dim=DIM) for i in range(N_SPARSE)]
    return sparse, [DenseFeature(f"I{i}") for i in range(N_DENSE)]


def _rechub_inputs(sparse: list[Any], dense: list[Any], seq: list[Any] = ()) -> Callable[[int, int], tuple]:
    def make(batch: int, seed: int) -> tuple[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        x = {f.name: torch.randint(1, VOCAB, (batch,), generator=g) for f in sparse}
        x.update({f.name: torch.rand(batch, generator=g) for f in dense})
        x.update({f.name: torch.randint(0, VOCAB, (batch, SEQ), generator=g) for f in seq})
        return (x,)
    return make


MLP = {"dims": [32, 16], "dropout": 0.0, "activation": "relu"}


def rechub(name: str) -> Builder:
    def build() -> tuple[torch.nn.Module, Callable[[int, int], tuple[Any, ...]]]:
        from torch_rechub.basic.features import SequenceFeature
        from torch_rechub.models import multi_task as mt, ranking as rk

        torch.manual_seed(0)
        sparse, dense = _rechub_features()
        seq: list[Any] = []
        towers = [{"dims": [8]}, {"dims": [8]}]
        if name == "DeepFM":
            model = rk.DeepFM(sparse + dense, sparse, MLP)
        elif name == "DCN":
            model = rk.DCN(sparse + dense, 2, MLP)
        elif name == "AutoInt":
            model = rk.AutoInt(sparse, dense, num_layers=2, num_heads=2, mlp_params=MLP)
        elif name == "WideDeep":
            model = rk.WideDeep(dense, sparse, MLP)
        elif name == "DIN":
            seq = [SequenceFeature("hist_C0", VOCAB, DIM, pooling="concat", shared_with="C0")]
            mlp = {k: v for k, v in MLP.items() if k != "activation"}  # DIN sets its own (dice)
            model = rk.DIN(sparse[1:], seq, sparse[:1], mlp, {"dims": [16], "activation": "dice"})
        elif name == "MMOE":
            model = mt.MMOE(sparse + dense, ["classification", "classification"], 3, {"dims": [16]}, towers)
        elif name == "PLE":
            model = mt.PLE(sparse + dense, ["classification", "classification"], 1, 2, 1, {"dims": [16]}, towers)
        elif name == "ESMM":
            model = mt.ESMM(sparse[:3], sparse[3:], {"dims": [16]}, {"dims": [16]})
            dense = []
        else:
            raise ValueError(name)
        return model.eval(), _rechub_inputs(sparse, dense, seq)
    return build


# -- the reference DLRM (facebookresearch/dlrm dlrm_s_pytorch.DLRM_Net, forward(dense_x, lS_o, lS_i)) --------
class ReferenceDLRM(torch.nn.Module):
    """As facebookresearch/dlrm's DLRM_Net.forward(dense_x, lS_o, lS_i): offsets [tables, batch], the ids
    a list of flat tensors, the interaction with Z[:, li, lj]."""

    def __init__(self, tables: int = 3, rows: int = 50, dim: int = 8) -> None:
        super().__init__()
        nn = torch.nn
        self.emb_l = nn.ModuleList([nn.EmbeddingBag(rows, dim, mode="sum") for _ in range(tables)])
        self.bot = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, dim), nn.ReLU())
        pairs = (tables + 1) * tables // 2
        self.top = nn.Sequential(nn.Linear(dim + pairs, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid())

    def forward(self, dense_x: torch.Tensor, lS_o: torch.Tensor, lS_i: list[torch.Tensor]) -> torch.Tensor:
        x = self.bot(dense_x)
        ly = [bag(lS_i[k], lS_o[k]) for k, bag in enumerate(self.emb_l)]
        batch, d = x.shape
        t = torch.cat([x] + ly, dim=1).view((batch, -1, d))
        z = torch.bmm(t, torch.transpose(t, 1, 2))
        n = z.shape[1]
        li = torch.tensor([i for i in range(n) for j in range(i)])
        lj = torch.tensor([j for i in range(n) for j in range(i)])
        return self.top(torch.cat([x, z[:, li, lj]], dim=1))


def dlrm_inputs(batch: int, seed: int, tables: int = 3, rows: int = 50) -> tuple:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 4, (tables, batch), generator=g)  # variable bag sizes, empty bags included
    offsets = torch.cumsum(lengths, 1) - lengths
    ids = [torch.randint(0, rows, (int(lengths[k].sum()) or 1,), generator=g) for k in range(tables)]
    return torch.randn(batch, 13, generator=g), offsets, ids


def reference_dlrm() -> tuple[torch.nn.Module, Callable[[int, int], tuple[Any, ...]]]:
    torch.manual_seed(0)
    return ReferenceDLRM().eval(), dlrm_inputs


MODELS: dict[str, Builder] = {
    **{f"deepctr/{n}": deepctr(n) for n in ("DeepFM", "DCN", "DCNMix", "xDeepFM", "AutoInt", "WDL", "NFM",
                                              "AFM", "PNN", "FiBiNET", "ONN", "CCPM", "AFN", "IFM", "DIFM", "MLR",
                                              "DIN", "DIEN", "MMOE", "PLE", "ESMM", "SharedBottom")},
    **{f"rechub/{n}": rechub(n) for n in ("DeepFM", "DCN", "AutoInt", "WideDeep", "DIN", "MMOE", "PLE", "ESMM")},
    "dlrm-reference": reference_dlrm,
}
