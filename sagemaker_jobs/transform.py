"""``informer-transform``: a local Batch Transform over the serving handlers.

``informer-transform --model-dir model/ --input histories.jsonl --output out/ --split-type Line
--batch-strategy MultiRecord --assemble-with Line``

Applies CreateTransformJob's semantics to a file or a folder (every non-hidden file, recursively)
and writes ``<output>/<relative input path>.out``:

- ``SplitType=None``: each file is one request; ``Line``: each non-empty line is a record;
- ``BatchStrategy=SingleRecord``: one record per request; ``MultiRecord``: as many consecutive
  records as fit in ``MaxPayloadInMB``, joined by newlines;
- ``AssembleWith=None``: responses concatenated as they are; ``Line``: a newline after each;
- a request over ``MaxPayloadInMB`` or a 4xx/5xx answer fails the job (exit code 2, the file and
  records named, and the file's line number when the handler names a line), as it fails a
  SageMaker transform job.

Each ``.out`` file is written whole (temp file + rename) once its input is done, so an
interrupted run leaves complete ``.out`` files or none, never a partial one; a rerun rewrites
every file (no duplicate lines) and removes temp files a killed run left behind. Files under
``--output`` are never read as input, so the output folder may sit inside the input folder.

Content type from ``--content-type`` or the extension (``.csv``, ``.jsonl``/``.jsonlines``,
``.json``); ``--accept`` defaults to the request's format.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from informer.errors import InformerError
from informer.files import atomic_write_text
from sagemaker_jobs import inference

SPLIT_TYPES, STRATEGIES, ASSEMBLY = ("None", "Line"), ("SingleRecord", "MultiRecord"), \
    ("None", "Line")
EXTENSIONS = {".csv": inference.CSV, ".jsonl": inference.JSONLINES,
              ".jsonlines": inference.JSONLINES, ".json": inference.JSON}


def requests(data: bytes, split_type: str, strategy: str, max_bytes: int, where: str
             ) -> Iterator[tuple[str, bytes]]:
    """``(records label, body)`` per HTTP request, in input order."""
    for label, body, _ in batches(data, split_type, strategy, max_bytes, where):
        yield label, body


def batches(data: bytes, split_type: str, strategy: str, max_bytes: int, where: str
            ) -> Iterator[tuple[str, bytes, list[int]]]:
    """``(records label, body, file line number of each record)`` per HTTP request."""
    if split_type == "None":
        records = [(1, data)]
    else:
        records = [(n, line.rstrip(b"\r")) for n, line in enumerate(data.split(b"\n"), 1)
                   if line.strip()]
    batch: list[bytes] = []
    lines: list[int] = []
    first = size = 0
    for n, (line, record) in enumerate(records, 1):
        if len(record) > max_bytes:
            raise InformerError(f"{where}: record {n} is {len(record)} bytes, over "
                                f"MaxPayloadInMB ({max_bytes / 2**20:g} MB)")
        extra = len(record) + (1 if batch else 0)
        if batch and (strategy == "SingleRecord" or size + extra > max_bytes):
            yield _label(first, n - 1), b"\n".join(batch), lines
            batch, lines, size = [], [], 0
        if not batch:
            first, extra = n, len(record)
        batch.append(record)
        lines.append(line)
        size += extra
    if batch:
        yield _label(first, len(records)), b"\n".join(batch), lines


_LINE = re.compile(r"^line (\d+)\b")


def _file_line(message: str, lines: list[int]) -> str:
    """The handler's ``line k`` (of the request body) as the line of the input file."""
    match = _LINE.match(message)
    if not match or not 1 <= int(match.group(1)) <= len(lines):
        return message
    return f"line {lines[int(match.group(1)) - 1]}{message[match.end():]}"


def _label(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}-{last}"


def content_type_of(path: Path, given: str | None) -> str:
    if given:
        return inference.media_type(given)
    if path.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[path.suffix.lower()]
    raise InformerError(f"{path}: unknown content type; pass --content-type (one of "
                        f"{sorted(set(EXTENSIONS.values()))})")


def transform_file(model: Any, path: Path, target: Path, content_type: str | None,
                   accept: str | None, split_type: str, strategy: str, max_bytes: int,
                   assemble_with: str) -> int:
    """Transform one file into ``target``; returns the number of requests."""
    from sagemaker_jobs.serve import invoke

    kind = content_type_of(path, content_type)
    parts, count = [], 0
    data = path.read_bytes()
    for label, body, lines in batches(data, split_type, strategy, max_bytes, str(path)):
        status, answer, _ = invoke(model, body, kind, accept)
        if status != 200:
            message = answer.decode(errors="replace").removeprefix("error: ")
            if split_type == "Line":
                message = _file_line(message, lines)
            raise InformerError(f"{path}: {label}: HTTP {status}: {message}")
        parts.append(answer + (b"\n" if assemble_with == "Line" else b""))
        count += 1
    remove_stale_temps(target)
    atomic_write_text(target, b"".join(parts).decode())
    return count


def remove_stale_temps(target: Path) -> None:
    """Temp files of ``target`` that a killed run left (``informer.files`` names them
    ``.<name>.<random>``)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_file():
                stale.unlink(missing_ok=True)


def inputs(source: Path, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(file, path relative to the input root)`` for a file or a folder; files under
    ``exclude`` (the output folder) are skipped."""
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise InformerError(f"--input: {source} not found; expected a file or a folder")
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(p for p in source.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(source).parts)
        and not (skip is not None and p.parent.resolve().is_relative_to(skip)))
    return [(p, p.relative_to(source)) for p in files]


def run(model_dir: str, source: Path, output: Path, content_type: str | None = None,
        accept: str | None = None, split_type: str = "None", strategy: str = "MultiRecord",
        max_payload_mb: float = 6, assemble_with: str = "None") -> list[Path]:
    for name, value, allowed in (("split-type", split_type, SPLIT_TYPES),
                                 ("batch-strategy", strategy, STRATEGIES),
                                 ("assemble-with", assemble_with, ASSEMBLY)):
        if value not in allowed:
            raise InformerError(f"--{name}: expected one of {list(allowed)}, got {value!r}")
    if not 0 < max_payload_mb <= 100:
        raise InformerError(f"--max-payload-mb: expected a number in (0, 100], got "
                            f"{max_payload_mb}")
    files = inputs(source, exclude=output)
    if not files:
        raise InformerError(f"--input: {source} holds no files")
    model = inference.model_fn(model_dir)
    written = []
    for path, relative in files:
        target = output / relative.with_name(relative.name + ".out")
        transform_file(model, path, target, content_type, accept, split_type, strategy,
                       int(max_payload_mb * 2**20), assemble_with)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="informer-transform",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--input", required=True, type=Path, help="file or folder")
    parser.add_argument("--output", required=True, type=Path, help="folder for the .out files")
    parser.add_argument("--content-type")
    parser.add_argument("--accept")
    parser.add_argument("--split-type", default="None", help="None | Line")
    parser.add_argument("--batch-strategy", default="MultiRecord",
                        help="SingleRecord | MultiRecord")
    parser.add_argument("--max-payload-mb", type=float, default=6.0)
    parser.add_argument("--assemble-with", default="None", help="None | Line")
    args = parser.parse_args(argv)
    try:
        written = run(args.model_dir, args.input, args.output, args.content_type, args.accept,
                      args.split_type, args.batch_strategy, args.max_payload_mb,
                      args.assemble_with)
    except InformerError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
