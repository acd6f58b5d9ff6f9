"""Fused seeds: k runs of one arm (configs equal but for ``seed``) trained as one horizontally fused
model (:func:`rblock_tune.models.fuse_models`) in one process, each member reproducing its solo
:class:`~rblock_tune.trainer.Trainer` run: its own initialisation, data order and augmentation,
masks (its own generator, in the state the solo run's global RNG would be in), BatchNorm
statistics and optimiser state, and the same metrics records."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, config_to_dict, flatten_config
from rblock_tune.data import Dataset, DeviceLoader, load_dataset
from rblock_tune.errors import CheckpointError, ConfigError, DivergedError
from rblock_tune.layout import SCHEDULED_DROP_PROB
from rblock_tune.models import fuse_models, load_member_state, member_state, member_tensor
from rblock_tune.regularizers import (
    DropLayer,
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

__all__ = ["FUSED_KEY", "FusedTrainer", "check_fusable"]

FUSED_KEY = "fused_members"
"""Marker of a fused checkpoint: its member states (each in :meth:`Trainer.state_dict`'s format)."""


def check_fusable(configs: Sequence[TrialConfig]) -> None:
    """Refuse configs that differ in anything but ``seed`` (one line naming the keys) or no config."""
    if not configs:
        raise ConfigError("fused training needs at least one config")
    first = flatten_config(configs[0])
    differ: list[str] = []
    for config in configs[1:]:
        flat = flatten_config(config)
        differ += [
            key for key, value in first.items() if key != "seed" and flat[key] != value and key not in differ
        ]
    if differ:
        raise ConfigError(
            f"fused runs may differ only in seed, but their configs differ in {', '.join(differ)}: "
            "fuse only the seeds of one arm"
        )


class FusedTrainer:
    """All the state of k fused runs of one arm.

    Args:
        configs: k >= 1 trial configs, equal but for ``seed``.
        dataset: an already loaded dataset (else loaded from ``configs[0].data``).

    Attributes:
        k, configs, epoch: members, their configs and the epochs run.
        records: per member, its records so far (a diverged member's stop where it diverged).
        test_acc: per member, its test accuracy once measured.
        diverged: per member, the :class:`DivergedError` it would have raised alone, or None.

    A member whose loss becomes non-finite is reported as diverged and frozen; the others go on.
    Its loss never enters the fused loss (``torch.where``), and its parameters, BatchNorm
    statistics and momentum are zeroed and its gradients zeroed at every later step, so it stays
    finite; no fused operation mixes members in any case (see :mod:`rblock_tune.models`).
    """

    def __init__(self, configs: Sequence[TrialConfig], dataset: Dataset | None = None) -> None:
        check_fusable(configs)
        self.configs = tuple(configs)
        self.k = len(self.configs)
        config = self.config = self.configs[0]
        cfg = config.train
        self.device = resolve_device(cfg.device)
        self.on_cuda = self.device.type == "cuda"
        self.paired = config.reg.paired
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.data = dataset if dataset is not None else load_dataset(config.data)
        models: list[nn.Module] = []
        self._mask_generators: list[torch.Generator] = []
        self._cpu_rng: list[torch.Tensor] = []  # the solo run's CPU RNG (its masks' source on CPU)
        for member in self.configs:
            model = build_seeded_model(member, self.data)  # as the solo run: the RNG, then the model
            self._cpu_rng.append(torch.get_rng_state())
            generator = torch.Generator(device=self.device)
            generator.set_state(torch.cuda.get_rng_state(self.device) if self.on_cuda else self._cpu_rng[-1])
            for layer in drop_layers(model):
                layer.generator = generator
            self._mask_generators.append(generator)
            models.append(model.to(self.device))
        self._member_drops = [drop_layers(m) for m in models]
        self.model = fuse_models(models, (DropLayer,))
        self.channels_last = self.on_cuda and cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.forward = compile_model(self.model) if cfg.compile else self.model
        self.data_generators = [torch.Generator().manual_seed(c.seed) for c in self.configs]
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
        self.records: list[list[dict[str, Any]]] = [[] for _ in range(self.k)]
        self.test_acc: list[float | None] = [None] * self.k
        self.diverged: list[DivergedError | None] = [None] * self.k
        self._consistency_batch = build_probe_batch(config, self.data, self.device, self.channels_last)

    # ----------------------------------------------------------------- helpers
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.on_cuda and self.config.train.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _sync(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)

    def _stack(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Members' (B, C, H, W) batches as one member-major (B, k * C, H, W) batch."""
        x = torch.cat(list(xs), dim=1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, k, K) logits of the fused model on a stacked batch (in the autocast dtype)."""
        out = self.forward(x)
        return out.view(out.shape[0], self.k, -1)

    @property
    def alive(self) -> list[bool]:
        """Per member: not diverged."""
        return [d is None for d in self.diverged]

    @property
    def done(self) -> bool:
        """True once every epoch has run, or every member has diverged."""
        return self.epoch >= self.config.train.epochs or not any(self.alive)

    def _freeze(self, i: int) -> None:
        """Zero member ``i``'s parameters, BatchNorm statistics and momentum: it stays finite."""
        with torch.no_grad():
            for name, tensor in self.model.state_dict(keep_vars=True).items():
                if tensor.dim() and not name.endswith("num_batches_tracked"):
                    member_tensor(tensor, self.k, i).zero_()
            for state in self.optimizer.state.values():
                buffer = state.get("momentum_buffer")
                if buffer is not None:
                    member_tensor(buffer, self.k, i).zero_()

    # ---------------------------------------------------------------- training
    def train_step(
        self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step of every member on its own batch, at the scheduled drop rate.

        Returns:
            Detached per-member ``(loss, ce, kl, correct)``, each of shape (k,).
        """
        set_drop_prob(self.model, self.drop_schedule(self.step))
        x = self._stack(xs)
        alpha = self.config.reg.alpha
        terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        with self._autocast():
            if self.paired:
                logits_a, logits_b = self._logits(torch.cat([x, x])).chunk(2)
                for i, y in enumerate(ys):
                    a, b = logits_a[:, i], logits_b[:, i]
                    loss, ce, kl = rblock_loss_terms(a, b, y, alpha)
                    correct = 0.5 * ((a.argmax(1) == y).sum() + (b.argmax(1) == y).sum())
                    terms.append((loss, ce, kl, correct))
            else:
                logits = self._logits(x)
                zero = torch.zeros((), device=self.device)
                for i, y in enumerate(ys):
                    ce = F.cross_entropy(logits[:, i].float(), y)
                    terms.append((ce, ce, zero, (logits[:, i].argmax(1) == y).sum()))
        losses, ces, kls, corrects = (torch.stack(t) for t in zip(*terms, strict=True))
        alive = torch.tensor(self.alive, device=self.device)
        # a non-finite or frozen member's loss never enters the sum (0 * NaN would be NaN)
        total = torch.where(alive & torch.isfinite(losses), losses, torch.zeros_like(losses)).sum()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        if not all(self.alive):
            for p in self.model.parameters():
                if p.grad is not None:
                    for i, ok in enumerate(self.alive):
                        if not ok:
                            member_tensor(p.grad, self.k, i).zero_()
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return losses.detach(), ces.detach(), kls.detach(), corrects.detach()

    def train_epoch(self, progress: bool = False) -> list[dict[str, float] | None]:
        """One pass of every member over its own shuffle of the training set; per member the training
        part of its record (None for a member that diverged, now or before)."""
        self.model.train()
        reset_drop_rates(self.model)
        sums = torch.zeros(self.k, 4, device=self.device, dtype=torch.float64)  # loss, ce, kl, correct
        seen = 0
        check_every = 25 if self.on_cuda else 1
        streams = [self.train_loader.batches(g) for g in self.data_generators]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {self.epoch + 1}/{self.config.train.epochs} (k={self.k})",
                unit="step",
                leave=False,
                file=sys.stderr,
            )
        for i, batches in enumerate(zip(*streams, strict=True)):
            xs = [b[0] for b in batches]
            ys = [b[1] for b in batches]
            loss, ce, kl, correct = self.train_step(xs, ys)
            n = ys[0].shape[0]
            seen += n
            sums += torch.stack([loss * n, ce * n, kl * n, correct], dim=1).double()
            if (i + 1) % check_every == 0 or i + 1 == self.steps_per_epoch:
                finite = torch.isfinite(sums[:, 0]).tolist()
                for m, ok in enumerate(finite):
                    if not ok and self.diverged[m] is None:
                        self.diverged[m] = DivergedError(self.epoch + 1, self.step, float(loss[m]))
                        self._freeze(m)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        out: list[dict[str, float] | None] = []
        for m, row in enumerate(sums.tolist()):
            if self.diverged[m] is not None:
                out.append(None)
                continue
            loss_sum, ce_sum, kl_sum, correct_sum = row
            out.append(
                {
                    "train_loss": loss_sum / seen,
                    "train_ce": ce_sum / seen,
                    "train_kl": kl_sum / seen,
                    "train_acc": correct_sum / seen,
                    **drop_rate_record(self.config, nn.ModuleList(self._member_drops[m])),
                    "train_images": float(seen),
                }
            )
        return out

    @torch.no_grad()
    def evaluate(self, loader: DeviceLoader) -> list[tuple[float, float]]:
        """Per member, mean cross-entropy and accuracy of its full model (eval mode) on ``loader``."""
        self.model.eval()
        sums = torch.zeros(self.k, 2, device=self.device, dtype=torch.float64)
        for x, y in loader.batches():
            with self._autocast():
                logits = self._logits(self._stack([x] * self.k)).float()
            for i in range(self.k):
                sums[i] += torch.stack(
                    [F.cross_entropy(logits[:, i], y, reduction="sum"), (logits[:, i].argmax(1) == y).sum()]
                ).double()
        n = max(loader.num_samples, 1)  # an empty loader (val_size=0) gives 0, 0
        return [(loss / n, correct / n) for loss, correct in sums.tolist()]

    def _probe_input(self) -> torch.Tensor:
        assert self._consistency_batch is not None
        return self._stack([self._consistency_batch] * self.k)

    @torch.no_grad()
    def _full_output(self) -> torch.Tensor:
        """(B, k, K) float logits of every member's full model (eval mode) on the probe batch."""
        self.model.eval()
        with self._autocast():
            return self._logits(self._probe_input()).float()

    @torch.no_grad()
    def consistency_kl_own(self, full: torch.Tensor) -> list[float] | None:
        """Per member, :meth:`Trainer.consistency_kl_own` (each member's masks from its own generator
        seeded with :data:`CONSISTENCY_SEED`); None without a probe batch and for ``none``."""
        if self._consistency_batch is None or self.config.reg.variant == "none":
            return None
        if self._member_drops[0][0].drop_prob == 0.0:
            return [0.0] * self.k
        self.model.eval()
        generators = [
            torch.Generator(device=self.device).manual_seed(CONSISTENCY_SEED) for _ in range(self.k)
        ]
        x = self._probe_input()
        try:
            for layers, generator in zip(self._member_drops, generators, strict=True):
                for layer in layers:
                    layer.train()
                    layer.generator = generator
                    layer.counting = False
            with self._autocast():
                if self.paired:
                    out_a, out_b = self._logits(torch.cat([x, x])).float().chunk(2)
                    values = [
                        0.5 * (symmetric_kl(out_a[:, i], full[:, i]) + symmetric_kl(out_b[:, i], full[:, i]))
                        for i in range(self.k)
                    ]
                else:
                    out = self._logits(x).float()
                    values = [symmetric_kl(out[:, i], full[:, i]) for i in range(self.k)]
        finally:
            for layers, generator in zip(self._member_drops, self._mask_generators, strict=True):
                for layer in layers:
                    layer.eval()
                    layer.generator = generator
                    layer.counting = True
        return [float(v) for v in values]

    @torch.no_grad()
    def consistency_kl_probe(self, full: torch.Tensor) -> list[float] | None:
        """Per member, :meth:`Trainer.consistency_kl_probe`; None without a probe batch."""
        if self._consistency_batch is None:
            return None
        cfg = self.config.train
        self.model.eval()
        with ExitStack() as stack:
            for layers in self._member_drops:
                generator = torch.Generator(device=self.device).manual_seed(CONSISTENCY_SEED)
                stack.enter_context(
                    dropblock_probe(
                        nn.ModuleList(layers), cfg.probe_drop_prob, cfg.probe_block_size, generator
                    )
                )
            with self._autocast():
                probed = self._logits(self._probe_input()).float()
        return [float(symmetric_kl(probed[:, i], full[:, i])) for i in range(self.k)]

    def run_epoch(self, progress: bool = False) -> list[dict[str, Any] | None]:
        """Train one epoch, validate, and return (and keep) each member's record (None for a member
        that has diverged). ``epoch_seconds`` is the fused epoch's; a member's
        ``images_per_second`` counts its own images, so the members' sum is the fused throughput."""
        if self.done:
            raise CheckpointError(f"all {self.config.train.epochs} epochs have already run")
        self._sync()
        start = time.perf_counter()
        trains = self.train_epoch(progress)
        self._sync()
        train_seconds = time.perf_counter() - start
        alive = self.alive
        vals = self.evaluate(self.val_loader) if self.val_loader.num_samples else None
        own = probe = None
        if self._consistency_batch is not None and any(alive):
            full = self._full_output()
            own, probe = self.consistency_kl_own(full), self.consistency_kl_probe(full)
        self._sync()
        seconds = time.perf_counter() - start
        out: list[dict[str, Any] | None] = []
        for i, train in enumerate(trains):
            if train is None:
                out.append(None)
                continue
            record: dict[str, Any] = {"epoch": self.epoch + 1}
            train_images = train.pop("train_images")
            record.update(train)
            record["val_loss"], record["val_acc"] = vals[i] if vals is not None else (None, None)
            record["lr"] = self.last_lr
            record[SCHEDULED_DROP_PROB] = self.drop_schedule(self.step - 1)
            if own is not None:
                record["consistency_kl_own"] = own[i]
            if probe is not None:
                record["consistency_kl_probe"] = probe[i]
            record["epoch_seconds"] = seconds
            record["images_per_second"] = train_images / train_seconds
            self.records[i].append(record)
            out.append(record)
        self.epoch += 1
        return out

    def epochs(self, progress: bool = False, test: bool = True) -> Iterator[list[dict[str, Any] | None]]:
        """The epoch loop: per epoch, one record per member (None for a member that has diverged), as
        :meth:`Trainer.epochs`: with ``test`` the last epoch's records carry ``test_acc``; a trainer
        restored after its last epoch without its test accuracy measures it and yields them again."""
        if test and self.done and self._missing_test():
            self.evaluate_test()
            yield [self.records[i][-1] if ok else None for i, ok in enumerate(self.alive)]
        while not self.done:
            records = self.run_epoch(progress)
            if self.done and test and any(self.alive):
                self.evaluate_test()
            yield records

    def _missing_test(self) -> bool:
        return any(ok and self.records[i] and self.test_acc[i] is None for i, ok in enumerate(self.alive))

    def evaluate_test(self) -> list[float | None]:
        """Test accuracy of every live member's full model, kept in ``test_acc`` and its last record."""
        accs = self.evaluate(self.test_loader)
        for i, ok in enumerate(self.alive):
            if ok:
                self.test_acc[i] = accs[i][1]
                if self.records[i]:
                    self.records[i][-1]["test_acc"] = accs[i][1]
        return self.test_acc

    # ------------------------------------------------------------ checkpoints
    def member_state_dict(self, i: int) -> dict[str, Any]:
        """Member ``i``'s state in :meth:`Trainer.state_dict`'s format: a solo :class:`Trainer` of
        its config can load it and continue the run alone."""
        if not 0 <= i < self.k:
            raise IndexError(f"member {i} out of range for k={self.k}")
        optimizer = self.optimizer.state_dict()
        opt_state = {
            j: {key: member_tensor(v, self.k, i).clone() if torch.is_tensor(v) else v for key, v in s.items()}
            for j, s in optimizer["state"].items()
        }
        generator_state = self._mask_generators[i].get_state()
        rng: dict[str, Any] = {
            "torch": self._cpu_rng[i] if self.on_cuda else generator_state,
            "data": self.data_generators[i].get_state(),
        }
        if self.on_cuda:
            rng["cuda"] = generator_state
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": config_to_dict(self.configs[i]),
            "epoch": self.epoch,
            "step": self.step,
            "last_lr": self.last_lr,
            "records": self.records[i],
            "test_acc": self.test_acc[i],
            "model": member_state(self.model.state_dict(), self.k, i),
            "optimizer": {"state": opt_state, "param_groups": optimizer["param_groups"]},
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: the members' states and which have diverged."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            FUSED_KEY: [self.member_state_dict(i) for i in range(self.k)],
            "diverged": [None if d is None else [d.epoch, d.step, d.loss] for d in self.diverged],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (its configs must be compatible, member by member)."""
        members = state.get(FUSED_KEY)
        if not isinstance(members, list):
            raise CheckpointError("not a fused checkpoint: continue a single run with Trainer")
        if len(members) != self.k:
            raise CheckpointError(f"the checkpoint fuses {len(members)} runs, but this trainer {self.k}")
        for i, member in enumerate(members):
            check_saved_config(member["config"], self.configs[i], self.device)
        for i, member in enumerate(members):
            load_member_state(self.model, self.k, i, member["model"])
        first = members[0]
        fused_opt = {
            j: {
                key: torch.cat([m["optimizer"]["state"][j][key] for m in members])
                if torch.is_tensor(v)
                else v
                for key, v in s.items()
            }
            for j, s in first["optimizer"]["state"].items()
        }
        self.optimizer.load_state_dict(
            {"state": fused_opt, "param_groups": first["optimizer"]["param_groups"]}
        )
        self.scheduler.load_state_dict(first["scheduler"])
        self.epoch = int(first["epoch"])
        self.step = int(first["step"])
        self.last_lr = float(first["last_lr"])
        self.records = [list(m["records"]) for m in members]
        self.test_acc = [m.get("test_acc") for m in members]
        for i, member in enumerate(members):
            rng = member["rng"]
            self._cpu_rng[i] = rng["torch"]
            self._mask_generators[i].set_state(rng["cuda"] if self.on_cuda else rng["torch"])
            self.data_generators[i].set_state(rng["data"])
        self.diverged = [
            None if d is None else DivergedError(int(d[0]), int(d[1]), float(d[2])) for d in state["diverged"]
        ]
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
        state = read_checkpoint(path)
        if FUSED_KEY not in state:
            raise CheckpointError(
                f"{path} is a single run's checkpoint, not a fused one: continue it with Trainer"
            )
        self.load_state_dict(state)
