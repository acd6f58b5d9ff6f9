"""The trainer: epochs of SGD on one trial config, one metrics record per epoch; the whole state
of a run, saved and restored exactly."""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, config_to_dict
from rblock_tune.data import Dataset, DeviceLoader, load_dataset
from rblock_tune.errors import CheckpointError, DivergedError
from rblock_tune.layout import SCHEDULED_DROP_PROB
from rblock_tune.regularizers import (
    compile_model,
    drop_layers,
    dropblock_probe,
    rblock_loss_terms,
    reset_drop_rates,
    set_drop_prob,
    symmetric_kl,
)
from rblock_tune.trainer._checkpoint import CHECKPOINT_FORMAT, check_saved_config, read_checkpoint
from rblock_tune.trainer._setup import (
    CONSISTENCY_SEED,
    build_drop_schedule,
    build_loaders,
    build_optimizer,
    build_probe_batch,
    build_seeded_model,
    drop_rate_record,
    resolve_device,
)

__all__ = ["CONSISTENCY_SEED", "TIMING_KEYS", "Trainer", "resolve_device"]

log = logging.getLogger(__name__)

TIMING_KEYS = ("epoch_seconds", "images_per_second")
"""Record fields that measure wall time; everything else is reproducible by seed on CPU."""


class Trainer:
    """All the state of one training run.

    Args:
        config: the trial config.
        dataset: an already loaded dataset (else loaded from ``config.data``).

    The seed fixes the initialisation (global torch RNG, seeded before the model is
    built, so every variant of the same architecture starts from the same weights),
    the data order and augmentation (a dedicated CPU generator: the same for every
    arm with the same seed) and the masks (global torch RNG after initialisation).

    Every variant's model has its drop layers in the same places (``none``'s are the
    identity), so one DropBlock probe can measure any of them (``consistency_kl_probe``).
    """

    def __init__(self, config: TrialConfig, dataset: Dataset | None = None) -> None:
        self.config = config
        cfg = config.train
        self.device = resolve_device(cfg.device)
        self.on_cuda = self.device.type == "cuda"
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.data = dataset if dataset is not None else load_dataset(config.data)
        self.paired = config.reg.paired
        self.model: nn.Module = build_seeded_model(config, self.data)
        self.channels_last = self.on_cuda and cfg.channels_last
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            compile_model(self.model) if cfg.compile else self.model
        )
        self.drop_layers = drop_layers(self.model)
        self.data_generator = torch.Generator().manual_seed(config.seed)
        self.train_loader, self.val_loader, self.test_loader = build_loaders(
            config, self.data, self.device, self.channels_last
        )
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.optimizer, self.scheduler = build_optimizer(
            self.model.parameters(), config, self.steps_per_epoch
        )
        self.drop_schedule = build_drop_schedule(config, self.steps_per_epoch)
        self.epoch = 0
        self.step = 0
        self.last_lr = cfg.lr
        self.records: list[dict[str, Any]] = []
        self.test_acc: float | None = None
        self._consistency_batch = build_probe_batch(config, self.data, self.device, self.channels_last)

    # ----------------------------------------------------------------- helpers
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.on_cuda and self.config.train.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _sync(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)

    @property
    def done(self) -> bool:
        """True once every epoch has run."""
        return self.epoch >= self.config.train.epochs

    # ---------------------------------------------------------------- training
    def train_step(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch at the scheduled drop rate.

        Paired variants run one forward pass on ``[x; x]``.

        Returns:
            Detached ``(loss, ce, kl, correct)``; ``correct`` counts right predictions
            (for paired variants the mean over the two sub-models).
        """
        set_drop_prob(self.model, self.drop_schedule(self.step))
        with self._autocast():
            if self.paired:
                logits_a, logits_b = self.forward(torch.cat([x, x])).chunk(2)
                loss, ce, kl = rblock_loss_terms(logits_a, logits_b, y, self.config.reg.alpha)
                correct = 0.5 * ((logits_a.argmax(1) == y).sum() + (logits_b.argmax(1) == y).sum())
            else:
                logits = self.forward(x)
                loss = ce = F.cross_entropy(logits.float(), y)
                kl = torch.zeros((), device=self.device)
                correct = (logits.argmax(1) == y).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step uses
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.detach(), ce.detach(), kl.detach(), correct

    def train_epoch(self, progress: bool = False) -> dict[str, float]:
        """One pass over the training set; returns the training part of the record, with the
        realised drop rates of its steps (:meth:`drop_rate_record`)."""
        self.model.train()
        reset_drop_rates(self.model)
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # loss, ce, kl, correct
        seen = 0
        check_every = 25 if self.on_cuda else 1
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = self.train_loader.batches(self.data_generator)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {self.epoch + 1}/{self.config.train.epochs}",
                unit="step",
                leave=False,
                file=sys.stderr,
            )
        for i, (x, y) in enumerate(batches):
            loss, ce, kl, correct = self.train_step(x, y)
            n = y.shape[0]
            seen += n
            sums += torch.stack([loss * n, ce * n, kl * n, correct]).double()
            if ((i + 1) % check_every == 0 or i + 1 == self.steps_per_epoch) and not torch.isfinite(sums[0]):
                raise DivergedError(self.epoch + 1, self.step, float(loss))
            if bar is not None:
                bar.update(1)
                if i % 20 == 0:  # reading the loss syncs a GPU: not every step
                    bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        if bar is not None:
            bar.close()
        loss_sum, ce_sum, kl_sum, correct_sum = sums.tolist()
        return {
            "train_loss": loss_sum / seen,
            "train_ce": ce_sum / seen,
            "train_kl": kl_sum / seen,
            "train_acc": correct_sum / seen,
            **self.drop_rate_record(),
            "train_images": float(seen),
        }

    def drop_rate_record(self) -> dict[str, float]:
        """Realised drop rates since the drop layers were last reset, measured from the masks
        actually applied: share of units dropped, per sub-model, averaged over steps and drop
        layers. ``drop_rate`` for single-model variants (0 for ``none``), ``drop_rate_a`` and
        ``drop_rate_b`` for the two sub-models of paired ones."""
        return drop_rate_record(self.config, self.model)

    @torch.no_grad()
    def evaluate(self, loader: DeviceLoader) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of the full model (eval mode) on ``loader``."""
        self.model.eval()
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)
        for x, y in loader.batches():
            with self._autocast():
                logits = self.forward(x).float()
            sums += torch.stack(
                [F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()]
            ).double()
        loss_sum, correct = sums.tolist()
        n = max(loader.num_samples, 1)  # an empty loader (val_size=0) gives 0, 0
        return loss_sum / n, correct / n

    @torch.no_grad()
    def _full_output(self) -> torch.Tensor:
        """The full model's (eval mode) float logits on the probe batch, which must exist."""
        assert self._consistency_batch is not None
        self.model.eval()
        with self._autocast():
            return self.model(self._consistency_batch).float()

    @torch.no_grad()
    def consistency_kl_own(self, full: torch.Tensor | None = None) -> float | None:
        """The train/inference inconsistency *through the model's own masks*: mean symmetric
        KL between its sub-model outputs (its variant's masks at the current drop rate) and the
        full model (eval mode) on the fixed probe batch. None without a validation split, and for
        ``none``, which has no masks of its own.

        Only the drop layers switch to training mode: BatchNorm stays in eval mode, so
        the metric measures what the masks change and updates no statistics. The masks
        come from a generator with a fixed seed, the same every epoch, and the global
        RNG is untouched. 0 at p = 0. Variants differ in their masks, so
        this does not compare variants on one scale: :meth:`consistency_kl_probe` does.
        """
        x = self._consistency_batch
        if x is None or self.config.reg.variant == "none":  # none has no masks of its own
            return None
        if self.drop_layers[0].drop_prob == 0.0:
            return 0.0
        full = self._full_output() if full is None else full
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(CONSISTENCY_SEED)
        try:
            for layer in self.drop_layers:
                layer.train()
                layer.generator = generator
                layer.counting = False  # a measurement, not a training step
            with self._autocast():
                if self.paired:
                    out_a, out_b = self.model(torch.cat([x, x])).float().chunk(2)
                    value = 0.5 * (symmetric_kl(out_a, full) + symmetric_kl(out_b, full))
                else:
                    value = symmetric_kl(self.model(x).float(), full)
        finally:
            for layer in self.drop_layers:
                layer.eval()
                layer.generator = None
                layer.counting = True
        return float(value)

    @torch.no_grad()
    def consistency_kl_probe(self, full: torch.Tensor | None = None) -> float | None:
        """The train/inference inconsistency measured by one instrument for every variant: mean
        symmetric KL between the model under a common DropBlock probe (single-model masks
        D(``train.probe_drop_prob``, ``train.probe_block_size``) at every drop layer, drawn from a
        fixed seed) and the full model, both with BatchNorm in eval mode, on the fixed probe batch.
        Two models with the same weights give the same value whatever their variants. None
        without a validation split."""
        x = self._consistency_batch
        if x is None:
            return None
        cfg = self.config.train
        full = self._full_output() if full is None else full
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(CONSISTENCY_SEED)
        with (
            self._autocast(),
            dropblock_probe(self.model, cfg.probe_drop_prob, cfg.probe_block_size, generator),
        ):
            probed = self.model(x).float()
        return float(symmetric_kl(probed, full))

    def run_epoch(self, progress: bool = False) -> dict[str, Any]:
        """Train one epoch, validate, and return (and keep) its metrics record.

        Raises:
            DivergedError: when the training loss becomes non-finite.
        """
        if self.done:
            raise CheckpointError(f"all {self.config.train.epochs} epochs have already run")
        self._sync()
        start = time.perf_counter()
        train = self.train_epoch(progress)
        self._sync()
        train_seconds = time.perf_counter() - start
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        train_images = train.pop("train_images")
        record.update(train)
        if self.val_loader.num_samples:
            record["val_loss"], record["val_acc"] = self.evaluate(self.val_loader)
        else:
            record["val_loss"] = record["val_acc"] = None
        record["lr"] = self.last_lr
        record[SCHEDULED_DROP_PROB] = self.drop_schedule(self.step - 1)
        if self._consistency_batch is not None:  # absent without a validation split
            full = self._full_output()  # one pass of the full model serves both metrics
            for name, probe in (
                ("consistency_kl_own", self.consistency_kl_own),
                ("consistency_kl_probe", self.consistency_kl_probe),
            ):
                value = probe(full)
                if value is not None:  # the own-mask metric is absent for none
                    record[name] = value
        self._sync()
        record["epoch_seconds"] = time.perf_counter() - start
        record["images_per_second"] = train_images / train_seconds
        self.epoch += 1
        self.records.append(record)
        return record

    def epochs(
        self, progress: bool = False, test: bool = True, every_epoch: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The epoch loop: run the remaining epochs, yielding each record when it is complete.

        With ``test`` (the default) the last record carries ``test_acc``, measured before it is
        yielded, so a caller that checkpoints or reports in its loop body (the hook of each epoch)
        saves it with the epoch. A trainer restored after its last epoch but without its test
        accuracy (a checkpoint taken in between) measures it and yields that last record again.
        Without ``test`` the test set is never evaluated (a search trial selects on validation). With
        ``test`` and ``every_epoch`` every record carries the ``test_acc`` of its epoch (a learning curve
        of test accuracy: a study's ``search.test_acc: every_epoch``), the last one as before.
        """
        if test and self.done and self.test_acc is None and self.records:
            self.records[-1]["test_acc"] = self.evaluate_test()
            yield self.records[-1]
        while not self.done:
            record = self.run_epoch(progress)
            if test and (self.done or every_epoch):
                record["test_acc"] = self.evaluate_test()
            yield record

    def evaluate_test(self) -> float:
        """Test accuracy of the full model (kept in ``self.test_acc``)."""
        self.test_acc = self.evaluate(self.test_loader)[1]
        return self.test_acc

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, schedule, RNG states."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()}
        if self.on_cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": config_to_dict(self.config),
            "epoch": self.epoch,
            "step": self.step,
            "last_lr": self.last_lr,
            "records": self.records,
            "test_acc": self.test_acc,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (its config must be compatible)."""
        check_saved_config(state["config"], self.config, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.last_lr = float(state["last_lr"])
        # records of an earlier rblock-tune named the scheduled drop probability ``drop_prob``
        self.records = [
            {(SCHEDULED_DROP_PROB if k == "drop_prob" else k): v for k, v in r.items()}
            for r in state["records"]
        ]
        self.test_acc = state.get("test_acc")
        torch.set_rng_state(state["rng"]["torch"])
        self.data_generator.set_state(state["rng"]["data"])
        if self.on_cuda and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        set_drop_prob(self.model, self.drop_schedule(max(self.step - 1, 0)))

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def restore(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save`."""
        self.load_state_dict(read_checkpoint(path))
