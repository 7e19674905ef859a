"""Learned matchers through kornia on the map's images: ``loftr`` (LoFTR, detector-free) and ``lightglue``
(DISK keypoints + LightGlue).

Both read the K candidates' images from the folder the map was built from (or ``images=DIR``), at a fixed working
size, and match all K pairs in one batched forward, then verify the matches with the same poselib homography as
``lighterglue``; score = inliers. Their weights are not shipped: kornia downloads them on first use where there
is internet. Offline, give the files (``--rerank-set weights=PATH``, and for lightglue ``extractor_weights=PATH``
for DISK); without them the re-ranker stops with one line naming the file to fetch. Maps need no extra features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import VprError
from ..io.images import load_image
from ..store.vmap import VprMap
from .base import RERANKERS, Reranker, RerankResult
from .lighterglue import read_state, verify

__all__ = ["LoFTRRerank", "LightGlueDiskRerank"]

URLS = {
    "loftr": "http://cmp.felk.cvut.cz/~mishkdmy/models/loftr_outdoor.ckpt",
    "lightglue": "https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/disk_lightglue.pth",
    "disk": "https://raw.githubusercontent.com/cvlab-epfl/disk/master/depth-save.pth",
}


def _state(path: str, what: str) -> dict:
    return read_state(Path(path), what, f"download {URLS[what]} and pass --rerank-set weights=PATH")


def _load(net: torch.nn.Module, sd: dict, path: str, what: str) -> None:
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise VprError(
            f"{what} weights {path}: do not fit ({str(e).splitlines()[0][:100]}); download {URLS[what]}"
        ) from None


class ImageMatcherRerank(Reranker):
    """Shared by the kornia matchers: candidate images from disk, one batched match, homography inliers."""

    needs = frozenset({"images"})  # candidates read from the map's image folder
    default_conf = {
        "top_k": 10,
        "weights": "",
        "images": "",  # folder of the map's images; empty = the folder the map was built from
        "size": [640, 480],  # working size (multiples of 8)
        "threshold_px": 8.0,
        "min_conf": 0.2,
    }
    ranges = {"threshold_px": ">0", "min_conf": "(0,1)", "size": "pair>=8"}

    net: torch.nn.Module

    def _bind_map(self, vmap: VprMap) -> None:
        folder = self.conf["images"] or vmap.info.get("source", "")
        self.folder = Path(folder) if folder else None
        if self.folder is None or not self.folder.is_dir():
            raise VprError(
                f"re-ranker '{self.name}' matches the map's images but their folder "
                f"'{folder or '(not recorded)'}' is not there; give --rerank-set images=DIR"
            )
        self.names = vmap.names
        self.net = self.net.to(self.device)

    def _grey(self, rgb: np.ndarray) -> torch.Tensor:
        w, h = (int(v) for v in self.conf["size"])
        g = cv2.cvtColor(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        return torch.from_numpy(g).float().div(255.0)[None]

    def _candidates(self, ids: np.ndarray) -> torch.Tensor:
        out = []
        for i in ids:
            p = self.folder / self.names[int(i)]
            if not p.is_file():
                raise VprError(f"map image {p} is missing; give --rerank-set images=DIR with the map's images")
            out.append(self._grey(load_image(p)))
        return torch.stack(out).to(self.device)

    def _inliers(self, k0: list[np.ndarray], k1: list[np.ndarray]) -> RerankResult:
        inl = np.array([verify(a, b, "homography", float(self.conf["threshold_px"])) for a, b in zip(k0, k1)], np.int64)
        t = torch.from_numpy(inl)
        return RerankResult(t.float(), t)


@RERANKERS.register("loftr")
class LoFTRRerank(ImageMatcherRerank):
    """LoFTR (Sun et al., CVPR 2021), outdoor configuration, through kornia."""

    name = "loftr"
    weights_kind = "loftr"

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        from kornia.feature import LoFTR

        self.net = LoFTR(pretrained=None).eval()
        if self.conf["weights"]:
            _load(self.net, _state(self.conf["weights"], "loftr"), self.conf["weights"], "loftr")
            self.source = str(self.conf["weights"])
        else:
            self._download()

    def _download(self) -> None:
        try:
            self.net.load_state_dict(
                torch.hub.load_state_dict_from_url(URLS["loftr"], map_location="cpu")["state_dict"]
            )
            self.source = "kornia download (loftr_outdoor.ckpt)"
        except Exception:
            raise VprError(
                f"re-ranker 'loftr': no weights (download failed, offline?); fetch {URLS['loftr']} and pass "
                "--rerank-set weights=PATH"
            ) from None

    @torch.inference_mode()
    def rerank_image(self, rgb: np.ndarray, ids: np.ndarray) -> RerankResult:
        c = self._candidates(ids)
        q = self._grey(rgb).to(self.device)[None].expand(len(c), -1, -1, -1)
        out = self.net({"image0": q, "image1": c})
        keep = out["confidence"] >= float(self.conf["min_conf"])
        b = out["batch_indexes"][keep].cpu().numpy()
        k0, k1 = out["keypoints0"][keep].cpu().numpy(), out["keypoints1"][keep].cpu().numpy()
        return self._inliers([k0[b == i] for i in range(len(c))], [k1[b == i] for i in range(len(c))])


@RERANKERS.register("lightglue")
class LightGlueDiskRerank(ImageMatcherRerank):
    """DISK keypoints (Tyszkiewicz et al., NeurIPS 2020) + LightGlue (Lindenberger et al., ICCV 2023), kornia."""

    name = "lightglue"
    weights_kind = "lightglue"
    default_conf = {**ImageMatcherRerank.default_conf, "extractor_weights": "", "keypoints": 1024, "min_conf": 0.1}
    ranges = {**ImageMatcherRerank.ranges, "keypoints": ">=1"}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        from kornia.feature import DISK, LightGlue

        self.disk = DISK().eval()
        self.net = LightGlue(None, input_dim=128, width_confidence=-1, depth_confidence=-1).eval()
        if not (self.conf["weights"] and self.conf["extractor_weights"]):
            raise VprError(
                "re-ranker 'lightglue': give both weight files (offline here): --rerank-set weights=PATH "
                f"({URLS['lightglue']}) and --rerank-set extractor_weights=PATH ({URLS['disk']})"
            )
        sd = _state(self.conf["weights"], "lightglue")
        sd = {k.replace("matcher.", ""): v for k, v in sd.items()}
        for i in range(self.net.conf.n_layers):  # the release's layer names, as kornia renames them
            sd = {
                k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn").replace(
                    f"cross_attn.{i}", f"transformers.{i}.cross_attn"
                ): v
                for k, v in sd.items()
            }
        sd.setdefault("confidence_thresholds", self.net.confidence_thresholds)
        _load(self.net, sd, self.conf["weights"], "lightglue")
        _load(self.disk, _state(self.conf["extractor_weights"], "disk"), self.conf["extractor_weights"], "disk")
        self.source = str(self.conf["weights"])

    def _bind_map(self, vmap) -> None:
        super()._bind_map(vmap)
        self.disk = self.disk.to(self.device)

    @torch.inference_mode()
    def rerank_image(self, rgb: np.ndarray, ids: np.ndarray) -> RerankResult:
        c = self._candidates(ids).expand(-1, 3, -1, -1)
        q = self._grey(rgb).to(self.device)[None].expand(1, 3, -1, -1)
        n = int(self.conf["keypoints"])
        feats = self.disk(torch.cat([q, c]), n, pad_if_not_divisible=True)
        kq, dq = feats[0].keypoints, feats[0].descriptors
        m = min([n, *(len(f.keypoints) for f in feats)])  # one length for the batch: the best m of each
        kc = torch.stack([f.keypoints[:m] for f in feats[1:]])
        dc = torch.stack([f.descriptors[:m] for f in feats[1:]])
        k = len(ids)
        w, h = (float(v) for v in self.conf["size"])
        size = torch.tensor([[w, h]], device=self.device).expand(k, 2)
        out = self.net(
            {
                "image0": {"keypoints": kq[:m][None].expand(k, -1, -1), "descriptors": dq[:m][None].expand(k, -1, -1),
                           "image_size": size},
                "image1": {"keypoints": kc, "descriptors": dc, "image_size": size},
            }
        )  # fmt: skip
        m0 = out["matches0"].cpu().numpy()
        k0, k1 = kq[:m].cpu().numpy(), kc.cpu().numpy()
        pairs = [(k0[m0[i] >= 0], k1[i][m0[i][m0[i] >= 0]]) for i in range(k)]
        return self._inliers([a for a, _ in pairs], [b for _, b in pairs])
