"""The retraining export: a preview of what it holds, the data file and its manifest, written
page by page so that a large export never sits in memory.

Parquet is written with ``pyarrow.parquet.ParquetWriter`` one row group per page of the log
(20,000 rows), CSV with ``pyarrow.csv.CSVWriter`` a page at a time. The API streams one ZIP
(the data file, then ``manifest.json``) written by ``zipfile`` to an unseekable sink: zipfile
then puts each entry's sizes and CRC after its data, so nothing is buffered or rewritten, and
any unzip tool reads it. The manifest comes last because it holds the data file's sha256,
computed while the file streams; the CLI writes the same two files into a directory.
"""

from __future__ import annotations

import contextlib
import io
import time
import zipfile
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlalchemy.orm import Session, sessionmaker

from backend.feedback.export_columns import page_batch
from backend.feedback.export_manifest import HashingWriter, Tally, manifest_of, preview_of
from backend.feedback.export_query import (
    ExportPlan,
    confirmed_corrections,
    plan_export,
    review_answers,
)
from backend.predictions.export_reads import PAGE_ROWS, count_export_rows, export_pages
from backend.schemas import ExportFile, ExportManifest, ExportPreview, ExportRequest, ModelInfo

MANIFEST_NAME = "manifest.json"
DATA_NAMES = {"parquet": "data.parquet", "csv": "data.csv"}


class Export:
    """One export of one model with its filters, planned from the model's versions."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        model: ModelInfo,
        request: ExportRequest,
        *,
        created_by: str,
        page_rows: int = PAGE_ROWS,
    ):
        self.sessions = sessions
        self.plan: ExportPlan = plan_export(model, request)
        self.created_by = created_by
        self.page_rows = page_rows

    @property
    def data_name(self) -> str:
        return DATA_NAMES[self.plan.request.format]

    def rows_to_read(self) -> int:
        """The log rows the export reads (before its label filters)."""
        return count_export_rows(self.sessions, self.plan.window)

    def batches(self, *, payload: bool = True) -> Iterator[pa.RecordBatch]:
        """The export's rows a page of the log at a time (a page may come out empty after the
        label filters); without the payload, no features or outputs (for counting)."""
        with self.sessions() as session:
            reports = confirmed_corrections(session, self.plan.model.name)
            reviews = review_answers(session, self.plan.model.name)
        pages = export_pages(
            self.sessions, self.plan.window, payload=payload, page_rows=self.page_rows
        )
        for rows in read_ahead(pages):
            yield page_batch(self.plan, rows, reports, reviews, payload=payload)

    def preview(self) -> ExportPreview:
        """The counts per source and class, reading labels and times only (no features)."""
        tally = Tally()
        for batch in self.batches(payload=False):
            tally.add(self.plan, batch)
        return preview_of(self.plan, tally, self.rows_to_read())

    def pages_written(self, sink: Any, tally: Tally) -> Iterator[None]:
        """Write the data file into ``sink`` (a file-like object) page by page, counting into
        ``tally``; yields after each page (the caller streams what the sink got meanwhile)."""
        schema = self.plan.schema
        writer: Any = (
            pq.ParquetWriter(sink, schema, compression="snappy")
            if self.plan.request.format == "parquet"
            else pa_csv.CSVWriter(sink, schema)
        )
        try:
            for batch in self.batches():
                if batch.num_rows:
                    writer.write_batch(batch)
                    tally.add(self.plan, batch)
                yield
        finally:
            writer.close()
        yield

    def manifest(self, tally: Tally, written: HashingWriter) -> ExportManifest:
        data = ExportFile(
            name=self.data_name,
            rows=tally.rows,
            bytes=written.size,
            sha256=written.digest.hexdigest(),
        )
        return manifest_of(self.plan, tally, [data], self.created_by, time.time())

    def write_directory(self, out: Path) -> ExportManifest:
        """The data file and ``manifest.json`` in ``out`` (made if missing)."""
        out.mkdir(parents=True, exist_ok=True)
        with (out / self.data_name).open("wb") as file:
            written = HashingWriter(file)
            tally = Tally()
            for _ in self.pages_written(written, tally):
                pass
        manifest = self.manifest(tally, written)
        (out / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
        return manifest

    def zip_stream(self) -> Generator[bytes, None, None]:
        """One ZIP with the data file and then ``manifest.json``, as its bytes are made."""
        sink = _Chunks()
        compression = zipfile.ZIP_STORED
        if self.plan.request.format == "csv":
            # Text shrinks several times; Parquet is compressed already.
            compression = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(sink, "w", compression=compression, compresslevel=1) as archive:
            with archive.open(self.data_name, "w", force_zip64=True) as entry:
                written = HashingWriter(entry)
                tally = Tally()
                for _ in self.pages_written(written, tally):
                    yield from sink.take()
            manifest = self.manifest(tally, written)
            archive.writestr(MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
        yield from sink.take()


def read_ahead(pages: Generator[Any, None, None]) -> Iterator[Any]:
    """The pages of ``pages``, the next one read in a thread while the caller works on the
    current one: the database read (which releases the GIL) overlaps the Arrow and Parquet
    work. One page ahead at most, so memory holds two pages."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-read") as reader:
        ahead = reader.submit(next, pages, None)
        try:
            while (page := ahead.result()) is not None:
                ahead = reader.submit(next, pages, None)
                yield page
        finally:
            # The reader must not run on after the export stopped (a client went away).
            ahead.cancel()
            with contextlib.suppress(Exception):
                ahead.result()
            pages.close()


class _Chunks(io.RawIOBase):
    """An unseekable sink that hands on what was written since it was last taken."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> Iterator[bytes]:
        if self.chunks:
            joined = b"".join(self.chunks)
            self.chunks.clear()
            yield joined
