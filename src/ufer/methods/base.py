"""FERMethod: the LightningModule every method subclasses.

It owns the inference network (``self.net``, a ``FERNet``), the per-sample label state,
metrics, optimizer and schedule. Validation, test and predict use ``self.net`` only, so
auxiliary branches never touch inference. A method adds heads and implements:

    forward_train(batch) -> dict of tensors     # every branch's outputs
    training_losses(batch, out) -> dict         # {"loss": total, "<component>": ...}
    update_state(batch, out)                    # optional, no-grad per-sample updates

The base's own ``training_losses`` is plain cross-entropy: the baseline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from ufer.methods.state import LabelState
from ufer.models.net import FERNet

Batch = dict[str, Tensor]
CKPT_KEY = "ufer"


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
        optimizer: ``sgd`` (momentum, Nesterov) | ``adam`` | ``adamw``.
        lr, weight_decay, momentum: optimizer settings of the network's parameters.
        scheduler: ``onecycle`` | ``cosine`` (per step) | ``multistep`` | ``exponential``
            (per epoch) | ``none``.
        warmup: OneCycle's warm-up fraction.
        milestones, lr_decay: MultiStep epochs and factor; ExponentialLR's factor.
    """

    method_name = "base"

    def __init__(self, backbone: str = "fer_resnet_small", num_classes: int = 7,
                 num_train: int = 0, num_aus: int = 0, has_va: bool = False,
                 class_names: list[str] | None = None, pretrained_path: str | None = None,
                 optimizer: Literal["sgd", "adam", "adamw"] = "sgd", lr: float = 0.05,
                 weight_decay: float = 1e-4, momentum: float = 0.9,
                 scheduler: Literal["onecycle", "cosine", "multistep", "exponential", "none"]
                 = "onecycle", warmup: float = 0.15, milestones: list[int] | None = None,
                 lr_decay: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = FERNet(backbone, num_classes, pretrained_path)
        self.labels = LabelState(num_train)
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
        """Per-sample state updates after the loss (no grad); default: none."""

    def targets(self, batch: Batch) -> Tensor:
        """Current (possibly corrected) labels of the batch (B,)."""
        return self.labels[batch["index"]]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.forward_train(batch)
        losses = self.training_losses(batch, out)
        size = batch["label"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True,
                     batch_size=size, prog_bar=name == "loss")
        self.train_acc(out["logits"].detach(), self.targets(batch))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=size)
        with torch.no_grad():
            self.update_state(batch, {k: v.detach() for k, v in out.items()})
        return losses["loss"]

    # ----------------------------------------------------------------- per-sample state
    def setup(self, stage: str) -> None:
        """Fill the label state from the training split (a resumed run then loads its own)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and dm is not None:
            train = dm.train_set
            self.labels.reset(train.labels.to(self.device),
                              None if train.clean_labels is None else train.clean_labels.to(self.device))
            self.setup_from_data(dm)

    def setup_from_data(self, datamodule: Any) -> None:
        """Hook for statistics of the training split (e.g. MTAC's AU graph); default none."""

    def on_train_epoch_end(self) -> None:
        for name, value in self.labels.summary().items():
            self.log(f"labels/{name}", value, on_step=False, on_epoch=True, sync_dist=False)

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, prefix: str) -> None:
        logits = self.net(batch["image"])
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

        Methods with heads of their own lr extend this list (``decayed_groups`` helps).
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
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, hp.milestones or [], hp.lr_decay)
        elif hp.scheduler == "exponential":
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, hp.lr_decay)
        else:
            raise ValueError(f"unknown scheduler {hp.scheduler!r}")
        return {"scheduler": sched, "interval": "epoch"}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = {"method": self.method_name, "backbone": self.hparams.backbone,
                                "class_names": list(self.hparams.class_names or [])}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        written_by = checkpoint.get(CKPT_KEY, {}).get("method")
        if written_by != self.method_name:
            raise ValueError(f"this checkpoint was written by method {written_by!r}, not "
                             f"{self.method_name!r}; load it with that method (ufer evaluate "
                             "reads the method from the checkpoint)")


def decayed_groups(params: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed (dim >= 2) and an undecayed group at learning rate lr."""
    params = [p for p in params if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "lr": lr, "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "lr": lr, "weight_decay": 0.0}]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a ufer Lightning checkpoint with ``weights_only=True``; name the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if CKPT_KEY not in ckpt:
        raise ValueError(f"{path} is not a ufer checkpoint (no '{CKPT_KEY}' entry)")
    return ckpt


def load_method(path: str | Path, map_location: str = "cpu") -> FERMethod:
    """Rebuild the method that wrote checkpoint ``path`` and load its weights and state."""
    from ufer._registry import method_class

    ckpt = read_checkpoint(path)
    cls = method_class(ckpt[CKPT_KEY]["method"])
    # LightningCLI adds private keys (_class_path, _instantiator) next to the arguments
    method = cls(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")})
    method.on_load_checkpoint(ckpt)
    method.load_state_dict(ckpt["state_dict"])
    method.data_hparams = dict(ckpt.get("datamodule_hyper_parameters", {}))
    return method.to(map_location).eval()

