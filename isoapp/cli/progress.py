"""Render engine events in a terminal with tqdm (the CLI's view of training and restoration)."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

from ..training.events import Event, LogEvent, ProgressEvent, StageEvent

log = logging.getLogger(__name__)


class TqdmProgress:
    """An event callback that keeps one tqdm bar per stage."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty() or enabled == "always"
        self.bars: dict[str, tqdm] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageEvent):
            log.info("%s", event.description or event.stage)
        elif isinstance(event, LogEvent):
            logging.getLogger("isoapp").log(logging.getLevelName(event.level.upper()), event.message)
        elif isinstance(event, ProgressEvent) and self.enabled:
            bar = self.bars.get(event.stage)
            if bar is None or bar.total != event.total:
                if bar is not None:
                    bar.close()
                voxels = event.extra.get("unit") == "voxel"  # block-wise restoration: voxels/s and an ETA
                bar = self.bars[event.stage] = tqdm(total=event.total, desc=event.stage, unit="vox" if voxels else "step",
                                                   unit_scale=voxels, initial=event.step if voxels else 0,
                                                   leave=False, dynamic_ncols=True)
            bar.update(event.step - bar.n)
            post = {}
            if event.loss is not None:
                post["loss"] = f"{event.loss:.4g}"
            if event.val_loss is not None:
                post["val"] = f"{event.val_loss:.4g}"
            if post:
                bar.set_postfix(post, refresh=False)
            if event.step >= event.total:
                bar.close()
                del self.bars[event.stage]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
