"""FERMethod: the LightningModule every method subclasses.

It owns the inference network (``self.net``, a ``FERNet``), the per-sample store
(``self.samples``: labels plus whatever per-sample fields a method adds), metrics, the
optimizer and schedule. Validation, test and predict use ``self.net`` only, so auxiliary
branches never touch inference. A method adds heads and implements:

    forward_train(batch) -> dict of tensors     # every branch's outputs
    training_losses(batch, out) -> dict         # {"loss": total, "<component>": ...}
    update_state(batch, out)                    # optional per-sample updates (no grad, fp32)

and tells the engine what it knows only through three hooks:

    sample_uncertainty() -> (N,) or None        # higher = label more likely wrong, NaN = unseen
    label_distribution() -> (N, C) or None      # soft training targets (LDLVA)
    diagnostics(train_set) -> dict              # method-specific checks for ``ufer report``

The base's own ``training_losses`` is plain cross-entropy: the baseline.
"""
from __future__ import annotations

import bisect
import pickle
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from ufer.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ufer.methods.state import LabelState, ddp_ignored
from ufer.metrics import auroc
from ufer.models.backbones import weights_follow
from ufer.models.net import FERNet

Batch = dict[str, Tensor]
Normalization = tuple[tuple[float, ...], tuple[float, ...]]
CKPT_KEY = "ufer"
# Layout of the per-sample store in checkpoints, older ones mapped on load: 1 = before
# SampleState (``labels.*``, ``confidence`` with -1 for unseen samples); 2 = no ``row_id``.
STATE_FORMAT = 3


class FERMethod(pl.LightningModule):
    """Common base of all methods (see module docstring).

    Args:
        backbone: timm model name (``fer_resnet_small`` for CPU benchmarks, ``resnet18`` ...).
        num_classes: C; linked from the data module by ``ufer train``.
        num_train: N, training samples, sizing per-sample state; linked from the data.
        num_aus: M, AU columns of the data (0 = none); linked from the data.
        has_va: whether the data has valence/arousal; linked from the data.
        class_names: class names in label order; linked from the data.
        pretrained_path: local backbone weights (never downloaded).
        input_mean, input_std: per-channel input normalisation; None = the backbone's own
            (timm's pretrained config; ImageNet's for architectures without one). Set them
            for user weights trained with other statistics. Recorded in checkpoints and
            bundles; the data module and every inference path use the method's values.
        optimizer: ``sgd`` (momentum, Nesterov) | ``adam`` | ``adamw``.
        lr, weight_decay, momentum: optimizer settings of the network's parameters.
        scheduler: ``onecycle`` | ``cosine`` (per step) | ``multistep`` | ``exponential``
            (per epoch) | ``none``.
        warmup: OneCycle's warm-up fraction.
        milestones, lr_decay: MultiStep epochs and factor; ExponentialLR's factor.
    """

    method_name = "base"
    #: what ``sample_uncertainty`` is, for tables ("1 - alpha", "lambda", ...)
    uncertainty_name: ClassVar[str] = ""
    #: the file under configs/paper/ holding the method's paper recipe and switches (the
    #: bench's paper regime); None for the baseline, which borrows the other methods'
    paper_config: ClassVar[str | None] = None

    def __init__(self, backbone: str = "fer_resnet_small", num_classes: int = 7,
                 num_train: int = 0, num_aus: int = 0, has_va: bool = False,
                 class_names: list[str] | None = None, pretrained_path: str | None = None,
                 input_mean: list[float] | None = None, input_std: list[float] | None = None,
                 optimizer: Literal["sgd", "adam", "adamw"] = "sgd", lr: float = 0.05,
                 weight_decay: float = 1e-4, momentum: float = 0.9,
                 scheduler: Literal["onecycle", "cosine", "multistep", "exponential", "none"]
                 = "onecycle", warmup: float = 0.15, milestones: list[int] | None = None,
                 lr_decay: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = FERNet(backbone, num_classes, pretrained_path)
        mean, std = self.net.backbone.normalization
        self.normalization: Normalization = (tuple(input_mean or mean), tuple(input_std or std))
        self.samples = LabelState(num_train)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_mean_acc = MulticlassAccuracy(num_classes, average="macro")
        self.val_acc_clean = MulticlassAccuracy(num_classes, average="micro")

    # ----------------------------------------------------------------- inference
    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised images -> logits (B, C). Inference = ``self.net``."""
        return self.net(x)

    # ----------------------------------------------------------------- training contract
    def forward_train(self, batch: Batch) -> dict[str, Tensor]:
        f, logits = self.net.features_and_logits(batch["image"])
        return {"features": f, "logits": logits}

    def training_losses(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """Cross-entropy on the current labels (the baseline); methods override this."""
        return {"loss": F.cross_entropy(out["logits"], self.targets(batch))}

    def update_state(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Per-sample state updates after the loss; default: none.

        Runs without gradient and with autocast off; ``out`` holds the detached outputs
        cast to float32, so cosines, rankings and means are computed in full precision
        (bf16's spacing near cos = 1 would make nearest-template decisions rounding noise).
        """

    def targets(self, batch: Batch) -> Tensor:
        """Current (possibly corrected) labels of the batch (B,)."""
        return self.samples[batch["index"]]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.forward_train(batch)
        losses = self.training_losses(batch, out)
        size = batch["label"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True,
                     batch_size=size, prog_bar=name == "loss")
        self.train_acc(out["logits"].detach(), self.targets(batch))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=size)
        self.apply_state_update(batch, out)
        return losses["loss"]

    def apply_state_update(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """``update_state`` as every training step runs it: no gradient, autocast off, the
        outputs detached and cast to float32."""
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            self.update_state(batch, {k: v.detach().float() for k, v in out.items()})

    # ----------------------------------------------------------------- hooks for the engine
    @property
    def relabels(self) -> bool:
        """True when this method (as configured) changes training labels; the engine then
        writes its label flow (``label_flow.json``)."""
        return False

    def sample_uncertainty(self) -> Tensor | None:
        """Per training sample (N,), higher = label more likely wrong, NaN = not seen yet;
        None for methods without such a score (the engine then uses the final model's
        probability of the given label)."""
        return None

    def label_distribution(self) -> Tensor | None:
        """Soft training targets (N, C) for methods that learn label distributions; None for
        methods that train on hard labels (``self.samples.current``)."""
        return None

    def diagnostics(self, train_set: Any) -> dict[str, Any]:
        """Method-specific checks on the (un-augmented) training split for ``ufer report``:
        a flat dict of numbers (None where undefined); default none."""
        return {}

    @torch.no_grad()
    def inference_uncertainty(self, images: Tensor) -> Tensor | None:
        """Per test image (B,), higher = prediction less trustworthy, computed from
        ``self.net`` alone on normalised images (B, 3, H, W) (POI's UEM); None for methods
        without one (``ufer evaluate`` then ranks by the softmax maximum)."""
        return None

    def inference_heads(self) -> dict[str, Any]:
        """What inference and export may run beside ``self.net`` without the training code:
        ``va`` (a Linear D -> 2, read through tanh), ``au`` (an ``AUGraphHead``, read through
        a sigmoid) and ``uncertainty`` (a weight-free test-time score from ``self.net``
        alone, described as a dict, e.g. POI's ``{"kind": "poi_uem", "crop_frac": k}``);
        {} by default. The class output is always ``self.net``'s."""
        return {}

    @torch.no_grad()
    def auxiliary_outputs(self, images: Tensor) -> dict[str, Tensor]:
        """What the training-only heads predict for normalised images (B, 3, H, W), for
        pseudo labels and inference: ``valence_arousal`` (B, 2) in [-1, 1], ``au_probs``
        (B, M) in [0, 1] (names in ``hparams``' AU order) where the method has such heads;
        {} otherwise. Never changes the class output, which is always ``self.net``'s."""
        return {}

    @classmethod
    def data_problem(cls, sizes: dict[str, Any]) -> str | None:
        """Why this method cannot train on data of these ``FERDataModule.method_sizes()``
        (e.g. no valence/arousal), as one sentence that says what to do; None when it can.
        Checked up front by ``ufer bench``; the constructor raises the same message."""
        return None

    # ----------------------------------------------------------------- per-sample state
    def setup(self, stage: str) -> None:
        """Hand the data module this method's normalisation; at fit, fill the per-sample store
        from the training split (a resumed run then loads its own) and keep it out of DDP's
        buffer broadcast."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        dm.normalization = self.normalization
        if stage == "fit":
            self.prepare_state(dm)
            self._ddp_params_and_buffers_to_ignore = ddp_ignored(self)

    def prepare_state(self, datamodule: Any) -> None:
        """Fill the per-sample store from ``datamodule``'s training split and compute the
        method's statistics of it (``setup_from_data``); used by fit and by ``bench --speed``."""
        train = datamodule.train_set
        self.samples.capacity = datamodule.batch_size
        self.samples.reset(train.labels.to(self.device),
                           None if train.clean_labels is None else
                           train.clean_labels.to(self.device),
                           torch.from_numpy(train.manifest.row_ids()).to(self.device))
        self.setup_from_data(datamodule)

    def on_train_start(self) -> None:
        """A resumed run's per-sample state must belong to these training rows: refuse a
        manifest that was reordered or changed since (``Manifest.check_rows``)."""
        dm = getattr(self.trainer, "datamodule", None)
        stored = self.samples.row_id.cpu().numpy()
        if dm is not None and stored.any():
            dm.train_set.manifest.check_rows(stored)

    def setup_from_data(self, datamodule: Any) -> None:
        """Hook for statistics of the training split (e.g. MTAC's AU graph); default none."""

    def on_train_epoch_end(self) -> None:
        """Log the label counts, this epoch's corrections and, where the truth is known, how
        well ``sample_uncertainty`` ranks the wrong given labels."""
        samples, epoch = self.samples, self.current_epoch
        stats = {**samples.summary(),
                 "corrected_this_epoch": float((samples.corrected_epoch == epoch).sum())}
        for name, value in stats.items():
            self.log(f"labels/{name}", value, on_step=False, on_epoch=True, sync_dist=False)
        for name, value in uncertainty_stats(self.sample_uncertainty(), samples).items():
            self.log(f"uncertainty/{name}", value, on_step=False, on_epoch=True,
                     sync_dist=False)

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, prefix: str, logits: Tensor | None = None) -> None:
        """Update and log ``prefix``/acc, mean_acc (and acc_clean) from ``logits`` (N, C),
        computed here from the batch's images when not given."""
        logits = self.net(batch["image"]) if logits is None else logits
        size = batch["label"].shape[0]
        self.val_acc(logits, batch["label"])
        self.val_mean_acc(logits, batch["label"])
        self.log(f"{prefix}/acc", self.val_acc, batch_size=size, prog_bar=True)
        self.log(f"{prefix}/mean_acc", self.val_mean_acc, batch_size=size)
        if "clean_label" in batch:
            self.val_acc_clean(logits, batch["clean_label"])
            self.log(f"{prefix}/acc_clean", self.val_acc_clean, batch_size=size)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self.net(batch["image"]).softmax(dim=1)

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups; weight decay only on weights with dim >= 2 (nanoGPT's rule).

        Methods with heads of their own lr extend this list (``decayed_groups`` helps); a
        group with ``"scheduled": False`` keeps its lr under the per-epoch schedules.
        """
        return decayed_groups(self.net.parameters(), self.hparams.lr, self.hparams.weight_decay)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = [g for g in self.param_groups() if g["params"]]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        else:
            raise ValueError(f"unknown optimizer {hp.optimizer!r}: sgd | adam | adamw")
        return {"optimizer": opt, "lr_scheduler": self._scheduler(opt)} if hp.scheduler != "none" \
            else opt

    def _scheduler(self, opt: torch.optim.Optimizer) -> dict[str, Any]:
        hp = self.hparams
        if hp.scheduler in ("onecycle", "cosine"):
            steps = max(int(self.trainer.estimated_stepping_batches), 1)
            peak = [g["lr"] for g in opt.param_groups]
            sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=steps,
                                                          pct_start=hp.warmup)
                     if hp.scheduler == "onecycle"
                     else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps))
            return {"scheduler": sched, "interval": "step"}
        if hp.scheduler == "multistep":
            def factor(epoch: int) -> float:
                return hp.lr_decay ** bisect.bisect_right(sorted(hp.milestones or []), epoch)
        elif hp.scheduler == "exponential":
            def factor(epoch: int) -> float:
                return hp.lr_decay ** epoch
        else:
            raise ValueError(f"unknown scheduler {hp.scheduler!r}")
        if all(g.get("scheduled", True) for g in opt.param_groups):
            sched = (torch.optim.lr_scheduler.MultiStepLR(opt, hp.milestones or [], hp.lr_decay)
                     if hp.scheduler == "multistep"
                     else torch.optim.lr_scheduler.ExponentialLR(opt, hp.lr_decay))
        else:  # some groups keep their lr: one factor function per group
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, [factor if g.get("scheduled", True) else (lambda epoch: 1.0)
                      for g in opt.param_groups])
        return {"scheduler": sched, "interval": "epoch"}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        mean, std = self.normalization
        checkpoint[CKPT_KEY] = {"method": self.method_name, "backbone": self.hparams.backbone,
                                "class_names": list(self.hparams.class_names or []),
                                "normalization": {"mean": list(mean), "std": list(std)},
                                "state_format": STATE_FORMAT}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get(CKPT_KEY, {})
        written_by = info.get("method")
        if written_by != self.method_name:
            raise ValueError(f"this checkpoint was written by method {written_by!r}, not "
                             f"{self.method_name!r}; load it with that method (ufer evaluate "
                             "reads the method from the checkpoint)")
        # checkpoints from before normalisation was recorded were trained with ImageNet's
        norm = info.get("normalization", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
        self.normalization = (tuple(norm["mean"]), tuple(norm["std"]))
        if info.get("state_format", 1) < STATE_FORMAT:
            upgrade_state_dict(checkpoint["state_dict"])


def uncertainty_stats(uncertainty: Tensor | None, samples: LabelState) -> dict[str, float]:
    """AUROC of ``uncertainty`` (N,) for the wrong given labels, and its mean over wrong and
    right labels, over the samples seen so far (not NaN) whose truth is known; {} when there
    is no score, no truth, or only one kind of label."""
    if uncertainty is None:
        return {}
    known = (samples.clean >= 0) & ~torch.isnan(uncertainty)
    wrong = samples.wrong_given()[known].cpu().numpy()
    scores = uncertainty[known].float().cpu().numpy()
    value = auroc(scores, wrong)
    if value is None:
        return {}
    return {"auroc_wrong": value, "mean_wrong": float(scores[wrong].mean()),
            "mean_right": float(scores[~wrong].mean())}


def upgrade_state_dict(state: dict[str, Tensor]) -> None:
    """Map an older state dict onto today's names, in place: ``labels.<field>`` ->
    ``samples.<field>``; the (N,) ``confidence`` buffer (-1 = unseen) ->
    ``samples.confidence`` (NaN = unseen); a missing ``samples.row_id`` -> zeros (unknown
    rows: not checked)."""
    for key in [k for k in state if k.startswith("labels.")]:
        state["samples." + key.removeprefix("labels.")] = state.pop(key)
    if "confidence" in state:
        conf = state.pop("confidence").float()
        state["samples.confidence"] = conf.masked_fill(conf < 0, float("nan"))
    if "samples.row_id" not in state and "samples.original" in state:
        state["samples.row_id"] = torch.zeros_like(state["samples.original"])


def decayed_groups(params: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed (dim >= 2) and an undecayed group at learning rate lr."""
    params = [p for p in params if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "lr": lr, "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "lr": lr, "weight_decay": 0.0}]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a ufer Lightning checkpoint weights-only (nothing in the file can run code).

    Raises:
        FileNotFoundError: no such file (or a folder), named.
        ValueError: the file is empty, truncated, corrupt, not a PyTorch file, holds
            objects a weights-only load refuses, or is not a ufer checkpoint; named.
    """
    path = Path(path)
    if not path.is_file():
        folder = " (a folder; pass the .ckpt file in it)" if path.is_dir() else ""
        raise FileNotFoundError(f"checkpoint not found: {path}{folder}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path} holds objects other than weights and plain values, which are "
                         "never loaded (loading them could run code from the file); it was not "
                         "written by ufer") from exc
    except Exception as exc:  # torch reports a damaged file with many kinds of error
        detail = str(exc).split(". ")[0].strip()
        raise ValueError(f"{path} cannot be read as a checkpoint: it is truncated, corrupt or "
                         f"not a PyTorch file ({type(exc).__name__}: {detail})") from exc
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt:
        raise ValueError(f"{path} is not a ufer checkpoint (no '{CKPT_KEY}' entry)")
    return ckpt


def load_method(path: str | Path, map_location: str = "cpu") -> tuple[FERMethod, dict[str, Any]]:
    """Rebuild the method that wrote checkpoint ``path`` with its weights and state.

    Returns:
        (method in eval mode, the data settings it was trained with: ``manifest``,
        ``image_size``, ``batch_size``, ``seed``, ``augment`` — empty for checkpoints
        written without a data module).
    """
    from ufer._registry import method_class

    ckpt = read_checkpoint(path)
    cls = method_class(ckpt[CKPT_KEY]["method"])
    # LightningCLI adds private keys (_class_path, _instantiator) next to the arguments; the
    # pretrained start is not needed (nor maybe present here): the weights follow
    kwargs = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    with weights_follow():
        method = cls(**{**kwargs, "pretrained_path": None})
    method.on_load_checkpoint(ckpt)
    method.load_state_dict(ckpt["state_dict"])
    return method.to(map_location).eval(), dict(ckpt.get("datamodule_hyper_parameters", {}))
