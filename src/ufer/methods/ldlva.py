"""ldlva: uncertainty-aware label distribution learning with valence-arousal neighbours
(Le et al., WACV 2023; shared/papers/ldlva-wacv2023.txt, shared/spec/ldlva.md).

Each training sample x_i has K neighbours N(i) in valence-arousal space (found once,
``data/neighbours.py``). Its training target is a label distribution:

- local similarity s_ik = exp(-||a_i - a_k||^2 / delta^2) (eq 2), computed once;
- calibration zeta_ik = sigmoid(g([v_i, v_k])) from the features (eq 3; the adaptive
  similarity) and contributions c_ik = zeta_ik s_ik (eq 4);
- d~_i = sum_k c_ik f(x_k) / sum_k c_ik (eq 5) and d_i = (1 - lambda_i) l_i + lambda_i d~_i
  (eq 6), with a learned uncertainty factor lambda_i in [0, 1] per sample;
- L = mean_i CE(d_i, f(x_i)) (eq 1) + gamma L_D (eq 11), L_D the lambda-weighted center
  loss plus a repulsion between class centers (eq 10).

Where the neighbours' predictions f(x_k) and features v_k come from (``neighbours``):

- ``bank`` (default, ours): each sample's latest softmax and feature, written to the
  per-sample store when the sample is trained on (identical on every process, one
  collective per step). A step costs about one forward. Entries not written yet (the first
  epoch) do not contribute: d~_i is built from the neighbours already seen, and an anchor
  none of whose neighbours has been seen trains on its plain label (d_i = l_i, lambda_i
  unchanged).
- ``forward`` (the paper's cost): the data module delivers each sample's K neighbour
  images with the anchor's augmentation and they are forwarded each step without gradient,
  BatchNorm in training mode as in the authors' code (their batch statistics also update
  the running ones). A step costs about 1 + K/3 of the baseline's.

The uncertainty factor lambda is a per-sample field of the store, not an optimizer
parameter: ``update_state`` applies a plain gradient step to the batch's samples only,
lambda_i <- clamp(lambda_i - lambda_lr dCE(d_i, f(x_i))/dlambda_i, 0, 1), with the
derivative of eqs 7-9 in closed form, CE(d~_i, f) - CE(l_i, f) (``update_state`` runs before
the backward pass, so autograd's value does not exist yet; the two are equal, tests check
it). A sample absent from the batch never moves (no momentum or Adam state), and the store
keeps lambda in checkpoints (the authors' code loses it on resume). Only L_cls trains lambda
(eqs 7-9; L_D's (1 - lambda_i) weight uses it as a constant, as the authors' code does).

The class centers of eq 10 are updated as in center loss (Wen et al., ECCV 2016, which the
paper follows): a buffer moved by ``center_lr`` (alpha) towards the (1 - lambda)-weighted
batch features of each class, plus gamma times the gradient of eq 10's repulsion term; the
per-class sums are summed over processes. This keeps alpha = 0.5 meaningful whatever the
network's optimizer (under Adam a parameter group at lr 0.5 would move every coordinate by
about 0.5 per step). The first term of L_D trains the backbone through v_i.

Inference is ``self.net`` only.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ufer._registry import register_method
from ufer.data.neighbours import nearest_neighbours
from ufer.data.transforms import preprocess
from ufer.losses.ldlva import (
    Distance,
    center_pull,
    center_repulsion,
    center_repulsion_gradient,
    center_step,
    distribution_cross_entropy,
    label_distribution,
    local_similarity,
    log_contributions,
    neighbour_distribution,
    uncertainty_factor_gradient,
)
from ufer.methods.base import Batch, FERMethod, decayed_groups, uncertainty_stats
from ufer.methods.state import all_reduce_sum

log = logging.getLogger(__name__)

BANK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16,
               "float16": torch.float16}
CALIBRATION_WIDTHS = (512, 256)  # eq 3: "the dimensionality of each layer is 512, 256, and 1"


class CalibrationMLP(nn.Module):
    """g of eq 3: [v_i, v_k] (2V) -> 512 -> 256 -> 1, LayerNorm and ReLU after the first two
    layers; zeta_ik = sigmoid(g), returned as log zeta_ik (eq 5 is built in log space,
    ``losses.ldlva.neighbour_distribution``). The first layer is applied to the
    concatenation as the sum of its two halves (the same linear map), the anchor's half once
    per anchor. The last layer runs in float32 even under autocast: g can drift far from 0
    (only the differences between pairs matter), where bfloat16's spacing (0.5 at |g| ~ 93)
    would distort the ratios of eq 5.

    Args:
        dim: V, the backbone's feature size.
        floor: lower clamp on g before the sigmoid (the authors' code: -1.3, so
            zeta >= 0.214); None = the paper (no clamp).
    """

    def __init__(self, dim: int, floor: float | None = None):
        super().__init__()
        wide, narrow = CALIBRATION_WIDTHS
        self.dim, self.floor = dim, floor
        self.first = nn.Linear(2 * dim, wide)
        self.rest = nn.Sequential(nn.LayerNorm(wide), nn.ReLU(), nn.Linear(wide, narrow),
                                  nn.LayerNorm(narrow), nn.ReLU(), nn.Linear(narrow, 1))

    def forward(self, anchor: Tensor, neighbours: Tensor) -> Tensor:
        """anchor v_i (B, V), neighbours v_k (B, K, V) -> log zeta (B, K), <= 0."""
        w_anchor, w_neighbour = self.first.weight.split(self.dim, dim=1)
        hidden = (F.linear(anchor, w_anchor, self.first.bias).unsqueeze(1)
                  + F.linear(neighbours, w_neighbour))
        narrow = self.rest[:-1](hidden)
        with torch.autocast(narrow.device.type, enabled=False):
            logit = self.rest[-1](narrow.float()).squeeze(-1)
        if self.floor is not None:
            logit = logit.clamp(min=self.floor)
        return F.logsigmoid(logit)


@register_method("ldlva")
class LDLVA(FERMethod):
    """LDLVA (see module docstring); defaults are the paper's, except where marked ours.

    Args:
        num_neighbours: K, neighbours per sample in valence-arousal space (paper 8; fig 7).
        delta: bandwidth of the local similarity (eq 2; paper 0.5).
        similarity_distance: ``squared_l2`` (eq 2) or ``l1`` (the authors' code,
            exp(-||a_i - a_k||_1 / delta)).
        neighbours: where the neighbours' predictions come from: ``bank`` (ours, default) or
            ``forward`` (the paper's; see the module docstring).
        distribution_targets: train on the label distributions d_i (eqs 5-6; table 4 "LD");
            False = the one-hot label (no neighbours, no calibration).
        adaptive_similarity: contributions c_ik = zeta_ik s_ik (eqs 3-4; table 4 "AS");
            False = s_ik alone (no calibration MLP).
        uncertainty_factor: learn lambda_i per sample (eqs 7-9; table 4 "UF"); False = every
            sample keeps ``lambda_init`` ("share a fixed value lambda for all samples").
        discriminative_loss: add gamma L_D (eqs 10-11; table 4 "DL").
        lambda_init: initial lambda_i (paper 0: "initialize its uncertainty factor to zero");
            the shared fixed value when ``uncertainty_factor`` is False.
        lambda_lr: step size of lambda_i on its own sample's loss CE(d_i, f(x_i)) (the
            gradient of eqs 7-9 without the batch mean's 1/B, so it does not depend on the
            batch size). Not given in the paper; ours: 0.05 (a noisy sample with
            CE(d~) - CE(l) = -2 reaches lambda 0.5 in 5 visits; the authors' code moves
            its sigmoid-parametrised lambda by about 0.017 (RAF-DB) to 0.17 (AffectNet,
            momentum 0.9) per unit of that difference).
        gamma: weight of L_D in the total loss (eq 11; paper 0.1, the authors' code 0.01).
        center_lr: alpha of the center update (Wen et al.'s 0.5, which the paper follows).
        calibration_floor: lower clamp of g before the sigmoid (the authors' code: -1.3);
            None = the paper.
        feature_bank_dtype: dtype of the feature bank (``bank`` mode with the adaptive
            similarity): ``bfloat16`` (ours; half of float32's memory, N x V: 1.1 GB for
            AffectNet's 280k x 2048-d ResNet-50 features; the calibration MLP normalises its
            first layer), ``float16`` or ``float32``. The softmax bank is always float32.
        **kwargs: the ``FERMethod`` arguments (backbone, sizes, optimizer, schedule).
    """

    uncertainty_name = "lambda"
    paper_config = "ldlva_rafdb.yaml"

    def __init__(self, num_neighbours: int = 8, delta: float = 0.5,
                 similarity_distance: Distance = "squared_l2",
                 neighbours: Literal["bank", "forward"] = "bank",
                 distribution_targets: bool = True, adaptive_similarity: bool = True,
                 uncertainty_factor: bool = True, discriminative_loss: bool = True,
                 lambda_init: float = 0.0, lambda_lr: float = 0.05, gamma: float = 0.1,
                 center_lr: float = 0.5, calibration_floor: float | None = None,
                 feature_bank_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16",
                 **kwargs: Any):
        problem = self.data_problem({"has_va": kwargs.get("has_va", False)})
        if problem is not None:
            raise ValueError(problem)
        super().__init__(**kwargs)
        if neighbours not in ("bank", "forward"):
            raise ValueError(f"neighbours must be 'bank' or 'forward', got {neighbours!r}")
        if similarity_distance not in ("squared_l2", "l1"):
            raise ValueError(f"similarity_distance must be 'squared_l2' or 'l1', got "
                             f"{similarity_distance!r}")
        if feature_bank_dtype not in BANK_DTYPES:
            raise ValueError(f"feature_bank_dtype must be one of {list(BANK_DTYPES)}, got "
                             f"{feature_bank_dtype!r}")
        if num_neighbours < 1 or not 0.0 <= lambda_init <= 1.0:
            raise ValueError("num_neighbours must be >= 1 and lambda_init in [0, 1]")
        hp = self.hparams
        dim, classes = self.net.num_features, hp.num_classes
        self.uses_bank = distribution_targets and neighbours == "bank"
        self.calibration = (CalibrationMLP(dim, calibration_floor)
                            if distribution_targets and adaptive_similarity else None)
        self.samples.add("uncertainty_factor", fill=lambda_init)
        self.samples.add("distribution", (classes,))  # latest d_i, NaN = not trained on yet
        if distribution_targets:
            self.samples.add("neighbours", (num_neighbours,), torch.long, fill=-1)
            self.samples.add("similarity", (num_neighbours,), fill=0.0)  # s_ik (eq 2)
        if self.uses_bank:
            self.samples.add("bank_probs", (classes,))
            if self.calibration is not None:
                self.samples.add("bank_features", (dim,), BANK_DTYPES[feature_bank_dtype])
        self.register_buffer("centers", torch.zeros(classes, dim) if discriminative_loss
                             else None)

    @classmethod
    def data_problem(cls, sizes: dict[str, Any]) -> str | None:
        if sizes.get("has_va"):
            return None
        return ("LDLVA needs valence/arousal for the training images (its neighbours, paper "
                "eq 2) and this data has none: add them with `ufer pseudo-va --manifest M "
                "--model CKPT --out M_va.csv` (predicted by a model with a VA head, e.g. MTAC "
                "trained on AffectNet) or `ufer pseudo-va --manifest M --csv va.csv --out "
                "M_va.csv` (your own path,valence,arousal table); VA is never derived from "
                "the class labels")

    # ----------------------------------------------------------------- data statistics
    def setup_from_data(self, datamodule: Any) -> None:
        """Find every training sample's K neighbours in VA space and their local similarity
        (eq 2), once, on the training device; in ``forward`` mode ask the data module for
        the neighbours' images."""
        hp = self.hparams
        if not hp.distribution_targets:
            return
        va, known = datamodule.train_set.va_matrix()
        trainer = self._trainer
        device = trainer.strategy.root_device if trainer is not None else self.device
        va, known = va.to(device), known.to(device)
        index = nearest_neighbours(va, hp.num_neighbours, known)
        similarity = local_similarity(va, va[index.clamp(min=0)], hp.delta,
                                      hp.similarity_distance)
        self.samples.neighbours.copy_(index)
        self.samples.similarity.copy_(torch.where(index >= 0, similarity, 0.0))
        if hp.neighbours == "forward":
            datamodule.neighbours = index.cpu()
        log.info("LDLVA: %d of %d training samples have valence/arousal; %d neighbours each "
                 "(%s mode); samples without VA train on their plain label",
                 int(known.sum()), len(known), hp.num_neighbours, hp.neighbours)

    # ----------------------------------------------------------------- training
    def forward_train(self, batch: Batch) -> dict[str, Tensor]:
        f, logits = self.net.features_and_logits(batch["image"])
        out = {"features": f, "logits": logits}
        if not self.hparams.distribution_targets:
            return out
        index = batch["index"]
        neighbours = self.samples.neighbours[index]
        if self.hparams.neighbours == "forward":
            probs, features, available = self._forwarded(batch, neighbours)
        else:
            probs, features, available = self._banked(neighbours)
        _, out["neighbour_distribution"] = self._mixture(
            f, self.samples.similarity[index], probs, features, available, self._one_hot(batch))
        return out

    def _forwarded(self, batch: Batch, neighbours: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The neighbour images' softmax f(x_k) (B, K, C) float32 and features v_k (B, K, V),
        forwarded without gradient (BatchNorm as the network's mode), and which neighbours
        exist (B, K) bool."""
        if "neighbour_image" not in batch:
            raise ValueError("LDLVA neighbours='forward' needs batches with 'neighbour_image' "
                             "(FERDataModule delivers them once setup_from_data has run); use "
                             "neighbours='bank' otherwise")
        images = batch["neighbour_image"]
        b, k = images.shape[:2]
        with torch.no_grad():
            v, logits = self.net.features_and_logits(
                images.flatten(0, 1).contiguous(memory_format=torch.channels_last))
        return logits.float().softmax(dim=1).view(b, k, -1), v.view(b, k, -1), neighbours >= 0

    def _banked(self, neighbours: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """The neighbours' bank entries: softmax (B, K, C) float32, features (B, K, V) float32
        (None without calibration), zero where not written yet, and which entries are
        written (B, K) bool."""
        rows = neighbours.clamp(min=0)
        probs = self.samples.bank_probs[rows]
        available = (neighbours >= 0) & ~torch.isnan(probs[..., 0])
        probs = torch.where(available.unsqueeze(-1), probs, 0.0)
        features = None
        if self.calibration is not None:
            features = torch.where(available.unsqueeze(-1),
                                   self.samples.bank_features[rows].float(), 0.0)
        return probs, features, available

    def _mixture(self, f: Tensor, similarity: Tensor, probs: Tensor, features: Tensor | None,
                 available: Tensor, one_hot: Tensor) -> tuple[Tensor | None, Tensor]:
        """log zeta (B, K) (eq 3; None without calibration) and d~ (B, C) (eqs 4-5) of
        anchors with features f (B, V) and labels one_hot (B, C), from their neighbours'
        similarity s (B, K), softmax (B, K, C), features (B, K, V) and availability (B, K)."""
        log_zeta = (self.calibration(f, features.to(f.dtype)) if self.calibration is not None
                    else None)
        log_c = torch.where(available, log_contributions(similarity, log_zeta), -torch.inf)
        return log_zeta, neighbour_distribution(log_c, probs, one_hot)

    def _one_hot(self, batch: Batch) -> Tensor:
        """l_i of the batch (B, C) float32."""
        return F.one_hot(self.targets(batch), self.hparams.num_classes).float()

    def training_losses(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        hp = self.hparams
        lam = self.samples.uncertainty_factor[batch["index"]]
        one_hot = self._one_hot(batch)
        target = (label_distribution(one_hot, out["neighbour_distribution"], lam)
                  if hp.distribution_targets else one_hot)
        cls = distribution_cross_entropy(target, out["logits"]).mean()  # eq 1
        losses = {"cls": cls, "lambda": lam.mean()}
        total = cls
        if self.centers is not None:  # eqs 10-11
            pull = center_pull(out["features"], self.centers, self.targets(batch), 1.0 - lam)
            losses["discriminative"] = pull + center_repulsion(self.centers)
            total = total + hp.gamma * losses["discriminative"]
        return {"loss": total, **losses}

    def update_state(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Write the batch's d_i, its lambda step (eqs 7-9) and (``bank``) its softmax and
        features in one collective; move the class centers (eq 10, Wen et al.)."""
        hp = self.hparams
        index = batch["index"]
        lam = self.samples.uncertainty_factor[index]
        one_hot = self._one_hot(batch)
        values = {"distribution": one_hot}
        if hp.distribution_targets:
            mixed = out["neighbour_distribution"]
            values["distribution"] = label_distribution(one_hot, mixed, lam)
            if hp.uncertainty_factor:
                step = hp.lambda_lr * uncertainty_factor_gradient(out["logits"], one_hot, mixed)
                values["uncertainty_factor"] = (lam - step).clamp(0.0, 1.0)
        if self.uses_bank:
            values["bank_probs"] = out["logits"].softmax(dim=1)
            if self.calibration is not None:
                values["bank_features"] = out["features"]
        self.samples.write(index, **values)
        if self.centers is not None:
            self._move_centers(out["features"], self.targets(batch), 1.0 - lam)

    def _move_centers(self, features: Tensor, labels: Tensor, weights: Tensor) -> None:
        """mu <- mu - alpha (delta_mu + gamma dR/dmu): Wen et al.'s step for eq 10's first
        term with weights 1 - lambda_i, over all processes' batches (one all_reduce), plus
        eq 10's repulsion R."""
        hp = self.hparams
        classes, dim = self.centers.shape
        sums = torch.zeros(classes, dim + 2, device=features.device)
        sums.index_add_(0, labels, torch.cat([weights.unsqueeze(1) * features,
                                              weights.unsqueeze(1),
                                              torch.ones_like(weights).unsqueeze(1)], dim=1))
        sums = all_reduce_sum(sums)
        step = center_step(self.centers, sums[:, :dim], sums[:, dim], sums[:, dim + 1])
        step = step + hp.gamma * center_repulsion_gradient(self.centers)
        self.centers.sub_(hp.center_lr * step)

    # ----------------------------------------------------------------- hooks for the engine
    def sample_uncertainty(self) -> Tensor | None:
        """lambda of every training sample (N,), NaN where not trained on yet; None when
        lambda is not learned (``uncertainty_factor`` or ``distribution_targets`` off)."""
        hp = self.hparams
        if not (hp.distribution_targets and hp.uncertainty_factor):
            return None
        seen = ~torch.isnan(self.samples.distribution[:, 0])
        return torch.where(seen, self.samples.uncertainty_factor, float("nan"))

    def label_distribution(self) -> Tensor | None:
        """The latest target d_i of every training sample (N, C) (eq 6), NaN rows where not
        trained on yet; None with ``distribution_targets`` off (one-hot targets)."""
        return self.samples.distribution if self.hparams.distribution_targets else None

    @torch.no_grad()
    def diagnostics(self, train_set: Any) -> dict[str, Any]:
        """How informative the neighbours are and what lambda and the calibration learned,
        on the un-augmented training split (truth-based numbers where the truth is known):

        - ``neighbour_coverage``: share of samples with at least one neighbour (with VA);
        - ``neighbours_same_given_class`` / ``neighbours_same_true_class``: share of
          (sample, neighbour) pairs whose given / true labels agree;
        - ``lambda_auroc_wrong``, ``lambda_mean_wrong``, ``lambda_mean_right``: lambda as a
          detector of wrong given labels;
        - ``calibration_same_true_class`` / ``calibration_other_true_class``: mean zeta_ik
          (eq 3, final network) over neighbour pairs of the same / another true class;
        - ``calibration_log_ratio``: mean log zeta_ik of the same-class pairs minus that of
          the other-class pairs: how much more weight (log factor) eq 5 gives a neighbour of
          the anchor's true class. Eq 5 uses only ratios of the zeta_ik, so this stays
          meaningful when all of them are tiny;
        - ``bank_vs_forward_tv`` (``bank`` mode): mean total variation distance between the
          neighbour distributions d~_i (eq 5) built from the bank and the ones ``forward``
          mode would build with the final network (un-augmented, eval mode), over the
          samples with a neighbour in the bank.
        """
        if not self.hparams.distribution_targets:
            return {}
        samples = self.samples
        neighbours = samples.neighbours
        pairs = neighbours >= 0
        anchor = torch.arange(len(neighbours), device=neighbours.device).unsqueeze(1)
        anchor = anchor.expand_as(neighbours)[pairs]
        other = neighbours[pairs]
        out: dict[str, Any] = {
            "neighbour_coverage": float(pairs.any(dim=1).float().mean()),
            "neighbours_same_given_class": _share(samples.original[anchor]
                                                  == samples.original[other])}
        truth = (samples.clean[anchor] >= 0) & (samples.clean[other] >= 0)
        same = samples.clean[anchor] == samples.clean[other]
        out["neighbours_same_true_class"] = _share(same[truth])
        stats = uncertainty_stats(self.sample_uncertainty(), samples)
        out.update({f"lambda_{k}": v for k, v in stats.items()})
        features = self._features(train_set)
        log_zeta, now, _ = self._rebuilt(features, banked=False)
        if log_zeta is not None:
            pair = log_zeta[pairs][truth]
            same_pair, other_pair = pair[same[truth]], pair[~same[truth]]
            out["calibration_same_true_class"] = _mean(same_pair.exp())
            out["calibration_other_true_class"] = _mean(other_pair.exp())
            if same_pair.numel() and other_pair.numel():
                out["calibration_log_ratio"] = _mean(same_pair) - _mean(other_pair)
        if self.uses_bank:
            _, banked, filled = self._rebuilt(features, banked=True)
            out["bank_vs_forward_tv"] = _mean(0.5 * (banked - now).abs().sum(dim=1)[filled])
        return out

    def _features(self, dataset: Any, batch_size: int = 256) -> Tensor:
        """Backbone features v (N, V) of ``dataset``'s images, eval mode, no augmentation."""
        was_training = self.training
        self.eval()
        parts = [self.net.backbone(preprocess(batch["image"].to(self.device),
                                              *self.normalization))
                 for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False)]
        self.train(was_training)
        return torch.cat(parts)

    def _rebuilt(self, features: Tensor, banked: bool, chunk: int = 4096
                 ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Every training sample's log zeta (N, K) (None without calibration) and d~ (N, C) with
        the current network's features (N, V) of the anchors, the neighbours taken from the
        bank (``banked``) or from the same current features and their softmax (what forward
        mode builds, here without augmentation), and which samples have a neighbour (N,)."""
        samples = self.samples
        probs_now = self.net.classifier(features).softmax(dim=1)
        one_hot = F.one_hot(samples.original, self.hparams.num_classes).float()
        parts = []
        for rows in torch.arange(len(features), device=features.device).split(chunk):
            neighbours = samples.neighbours[rows]
            if banked:
                probs, neighbour_features, available = self._banked(neighbours)
            else:
                safe = neighbours.clamp(min=0)
                probs, neighbour_features, available = (probs_now[safe], features[safe],
                                                        neighbours >= 0)
            log_zeta, d = self._mixture(features[rows], samples.similarity[rows], probs,
                                        neighbour_features, available, one_hot[rows])
            parts.append((log_zeta, d, available.any(dim=1)))
        log_zeta = None if self.calibration is None else torch.cat([p[0] for p in parts])
        return log_zeta, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """The network and the calibration MLP g at ``lr`` (lambda and the centers are
        moved by ``update_state``, outside the optimizer)."""
        groups = super().param_groups()
        if self.calibration is not None:
            groups += decayed_groups(self.calibration.parameters(), self.hparams.lr,
                                     self.hparams.weight_decay)
        return groups


def _share(mask: Tensor) -> float | None:
    """Share of True in a bool tensor; None when empty."""
    return float(mask.float().mean()) if mask.numel() else None


def _mean(values: Tensor) -> float | None:
    """Mean of a tensor; None when empty."""
    return float(values.float().mean()) if values.numel() else None
