"""Train/val/test borders: the paper's fixed ETT borders or ratio splits for other CSVs."""

from __future__ import annotations

from informer.errors import InformerError

STAGES = ("train", "val", "test")
# ETT: 12 / 4 / 4 months of 30 days; hourly rows per day 24, 15-minute rows 96.
_ETT_MONTH_ROWS = {"ett_hour": 30 * 24, "ett_minute": 30 * 24 * 4}
SPLITS = (*_ETT_MONTH_ROWS, "ratio")


def split_borders(n_rows: int, seq_len: int, split: str = "ratio", train_ratio: float = 0.7,
                  test_ratio: float = 0.2) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` per stage; val and test start ``seq_len`` rows early so their
    first window's history is the end of the previous split."""
    if split in _ETT_MONTH_ROWS:
        month = _ETT_MONTH_ROWS[split]
        ends = [12 * month, 16 * month, 20 * month]
        if n_rows < ends[-1]:
            raise InformerError(
                f"data.split: {split!r} needs the full ETT file ({ends[-1]} rows), got {n_rows} "
                f"rows; use split=ratio for other data"
            )
    elif split == "ratio":
        if not (0 < train_ratio < 1 and 0 < test_ratio < 1 and train_ratio + test_ratio < 1):
            raise InformerError(
                f"data.train_ratio/test_ratio: expected fractions with a sum below 1, got "
                f"{train_ratio} and {test_ratio}"
            )
        n_train, n_test = int(n_rows * train_ratio), int(n_rows * test_ratio)
        ends = [n_train, n_rows - n_test, n_rows]
    else:
        raise InformerError(f"data.split: expected one of {list(SPLITS)}, got {split!r}")
    starts = [0, ends[0] - seq_len, ends[1] - seq_len]
    return {stage: (max(s, 0), e) for stage, s, e in zip(STAGES, starts, ends)}
